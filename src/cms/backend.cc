#include "cms/backend.h"

namespace devid::cms {

Result<ca::SigningCa*> Backend::Ca(const std::string& org, const std::string& name,
                                   bool for_issuance) {
  std::string key = org + "/" + name;
  auto it = cas_.find(key);
  // Answering about certificates (OCSP, CRL) does not depend on the CA's
  // status: no read of the CA row on that hot path.
  if (!for_issuance && it != cas_.end()) return it->second.get();
  DEVID_ASSIGN_OR_RETURN(store::Organization o, store_.GetOrganization(org));
  DEVID_ASSIGN_OR_RETURN(store::CaRecord record, store_.GetCa(o.id, name));
  if (for_issuance && record.disabled) {
    return MakeError(ErrorCode::kPolicy, "CA '" + name + "' is disabled");
  }
  if (it != cas_.end() && it->second->record().id == record.id &&
      it->second->record().disabled == record.disabled) {
    return it->second.get();
  }
  DEVID_ASSIGN_OR_RETURN(ca::SigningCa unlocked, hierarchy_.Unlock(org, name));
  auto& slot = cas_[key];
  slot = std::make_shared<ca::SigningCa>(std::move(unlocked));
  return slot.get();
}

Result<std::shared_ptr<ca::SigningCa>> Backend::SharedCa(const std::string& org,
                                                         const std::string& name) {
  if (auto ca = Ca(org, name, false); !ca.ok()) return ca.error();
  return cas_.at(org + "/" + name);
}

}  // namespace devid::cms
