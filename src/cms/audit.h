// The audit log (DESIGN §6): every operation and every denial appended to one
// hash chain. Each record's hash covers its fields and the previous record's
// hash, and the store keeps the last link apart, so any edit, deletion,
// insertion or reordering breaks a link that VerifyAuditChain reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/result.h"
#include "store/store.h"

namespace devid::cms {

// SHA-256 (hex) over a canonical JSON array of the record's fields and prev_hash.
std::string AuditLinkHash(const store::AuditRecord& record);

struct AuditEvent {
  std::optional<int64_t> org_id;
  std::string actor;
  std::string action;   // "certificate.issue", "auth.login", ...
  std::string target;   // what it acted on: a serial, a user name...
  std::string outcome;  // "ok", "denied", "failed"
  std::string detail;   // a short message; never a secret
};

Result<store::AuditRecord> AppendAudit(store::Store& store, const AuditEvent& event);

struct AuditVerification {
  bool ok = true;
  int64_t records = 0;
  std::optional<int64_t> first_broken_seq;
  std::string problem;  // what is wrong at first_broken_seq
};

// Reads the whole chain in order and checks every link and the head.
Result<AuditVerification> VerifyAuditChain(store::Store& store);

}  // namespace devid::cms
