#include "cms/audit.h"

#include <nlohmann/json.hpp>

#include "core/bytes.h"
#include "core/time.h"
#include "crypto/key.h"

namespace devid::cms {

std::string AuditLinkHash(const store::AuditRecord& r) {
  nlohmann::json fields = nlohmann::json::array();
  fields.push_back(r.seq);
  fields.push_back(r.at);
  fields.push_back(r.org_id ? nlohmann::json(*r.org_id) : nlohmann::json(nullptr));
  for (const std::string* s :
       {&r.actor, &r.action, &r.target, &r.outcome, &r.detail, &r.prev_hash}) {
    fields.push_back(*s);
  }
  std::string canonical = fields.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return HexEncode(crypto::Sha256(AsBytes(canonical)));
}

Result<store::AuditRecord> AppendAudit(store::Store& store, const AuditEvent& event) {
  store::AuditRecord r;
  r.at = NowUnix();
  r.org_id = event.org_id;
  r.actor = event.actor;
  r.action = event.action;
  r.target = event.target;
  r.outcome = event.outcome;
  r.detail = event.detail;
  return store.AppendAudit(std::move(r), AuditLinkHash);
}

Result<AuditVerification> VerifyAuditChain(store::Store& store) {
  AuditVerification v;
  int64_t last_seq = 0;
  std::string last_hash;
  auto broken = [&](int64_t seq, std::string problem) {
    v.ok = false;
    v.first_broken_seq = seq;
    v.problem = std::move(problem);
    return v;
  };
  while (true) {
    DEVID_ASSIGN_OR_RETURN(std::vector<store::AuditRecord> page,
                           store.ListAudit(std::nullopt, last_seq, 1000));
    if (page.empty()) break;
    for (const store::AuditRecord& r : page) {
      if (r.seq != last_seq + 1) {
        return broken(last_seq + 1, "record " + std::to_string(last_seq + 1) + " is missing");
      }
      if (r.prev_hash != last_hash) {
        return broken(r.seq,
                      "record " + std::to_string(r.seq) + " does not link to the record before it");
      }
      if (AuditLinkHash(r) != r.hash) {
        return broken(r.seq, "record " + std::to_string(r.seq) + " was changed");
      }
      last_seq = r.seq;
      last_hash = r.hash;
      ++v.records;
    }
  }
  DEVID_ASSIGN_OR_RETURN(store::AuditHead head, store.GetAuditHead());
  if (head.seq != last_seq || head.hash != last_hash) {
    return broken(last_seq + 1, "the chain ends at record " + std::to_string(last_seq) +
                                    " but the head says " + std::to_string(head.seq) +
                                    (head.seq > last_seq ? ": records were removed from the end"
                                                         : ": records were added behind the head"));
  }
  return v;
}

}  // namespace devid::cms
