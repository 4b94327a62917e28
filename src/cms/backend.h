// What every CMS endpoint shares: the store connection and the CA engine,
// used by one request at a time, and the CAs whose keys are unlocked so far.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ca/hierarchy.h"
#include "http/metrics.h"
#include "store/store.h"

namespace devid::cms {

class Backend {
 public:
  Backend(store::Store& store, ca::Hierarchy& hierarchy, http::Metrics* metrics)
      : store_(store), hierarchy_(hierarchy), metrics_(metrics) {}

  std::unique_lock<std::mutex> Lock() { return std::unique_lock<std::mutex>(mu_); }

  // With Lock() held. The CA's row is read again each time, so that a CA
  // disabled by another node is seen (the store is the source of truth);
  // only the unlocked key is kept (OCSP and CRLs, which do not depend on the
  // status, skip the read). kNotFound, kAuth (no passphrase), or
  // kPolicy when `for_issuance` and the CA is disabled.
  Result<ca::SigningCa*> Ca(const std::string& org, const std::string& name, bool for_issuance);
  // The same, for use after the lock is released (OCSP signs outside it): the
  // CA object stays alive while the caller holds it, even if replaced here.
  Result<std::shared_ptr<ca::SigningCa>> SharedCa(const std::string& org, const std::string& name);

  // Called after a revocation this process made: answers cached from before
  // (OCSP) are dropped at once. Revocations by other processes sharing the
  // database reach the caches when their entries expire.
  void NoteRevocation() { ++revocation_generation_; }
  uint64_t revocation_generation() const { return revocation_generation_; }

  store::Store& store() { return store_; }
  ca::Hierarchy& hierarchy() { return hierarchy_; }
  http::Metrics* metrics() { return metrics_; }

 private:
  store::Store& store_;
  ca::Hierarchy& hierarchy_;
  http::Metrics* metrics_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<ca::SigningCa>> cas_;
  std::atomic<uint64_t> revocation_generation_{0};
};

}  // namespace devid::cms
