// Factory personalisation (seed fig. 2): identities put into secure elements
// before the devices are built.
//
// Two ways, one result (a folder of chip images, each operational with its
// device key in slot 0, chip file C001 = device certificate + issuing CA
// certificate, CA01 = the issuing CA's public key):
//  - keys made by the CMS (steps 2-5): `OrderBundle` asks the CMS for a batch
//    sealed for the production site (CMS EnvelopedData to the site's
//    certificate); `PersonalizeFromBundle` opens it at the site and imports
//    each key wrapped to its chip's transport key (IMPORT_KEY);
//  - keys made on the chip: `PersonalizeOnChip` has each chip generate its
//    key and sign its CSR, and the CMS sign the CSRs as one batch. Private
//    keys never exist outside a chip.
//
// The output folder is also the run's journal, so that an interrupted run
// resumes without issuing anything twice:
//   order.json         which order the folder belongs to (another order is refused)
//   journal/<id>.json  one record per chip, written atomically at each step
//   pins.json          the chips' user PINs when drawn here (0600)
//   manufacturer.key   the manufacturer key when drawn here (0600, hex)
//   <id>.img(.fuse)    the chip images, named after the device id (certificate CN)
//   manifest.json      per chip: serial, device id, certificate serial, fingerprint, image
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cms/client/client.h"
#include "core/bytes.h"
#include "core/result.h"
#include "core/secret.h"
#include "crypto/certificate.h"
#include "crypto/key.h"

namespace devid::factory {

// What the CMS is asked for: `count` identities of `template_name` from CA
// `ca`, subjects from `subject_pattern` with "{n}" replaced by start, start+1, ...
struct BatchSpec {
  std::string org;
  std::string ca;
  std::string template_name;
  std::string subject_pattern;  // "CN=dev-{n},O=Acme"
  int count = 0;
  int start = 1;
  std::optional<int> days;
  crypto::KeyType key_type = crypto::KeyType::kEcP256;  // keys made on the chip
};

// seed fig. 2 steps 2-4: the CMS makes keys and certificates in one
// transaction and answers only with them sealed for `site_certificate`.
struct Order {
  Bytes bundle;  // DER CMS EnvelopedData
  std::vector<std::string> serials;
};
Result<Order> OrderBundle(cms::client::CmsClient& cms, const BatchSpec& spec,
                          const crypto::Certificate& site_certificate);

// Test hooks (deterministic interruptions, as a power cut or a crash would
// leave things). Not for production use.
struct FaultInjection {
  // Stop with an error once this many chips are complete in this run, after
  // half-personalising the next one (its key in, not operational).
  std::optional<int> stop_after_chips;
  // On-chip mode: stop right after the CMS has answered the batch, before the
  // answer is written to the journal.
  bool stop_after_cms_answer = false;
};

struct PersonalisationOptions {
  std::string out_dir;
  // One user PIN for every chip; none: a random PIN per chip, kept in pins.json.
  std::optional<SecretString> pin;
  // 32 bytes; empty: the one this folder keeps, or a new random one saved in it.
  SecretBytes manufacturer_key;
  FaultInjection fault;
  // One line per chip made ("dev-1: chip SE-…, certificate 1A2B…").
  std::function<void(const std::string&)> progress;
};

struct ManifestEntry {
  std::string device_id;  // the certificate's CN
  std::string chip_serial;
  std::string certificate_serial;
  std::string fingerprint_sha256;  // of the certificate's DER, hex
  std::string image;               // file name in the output folder
};

struct PersonalisationReport {
  std::vector<ManifestEntry> chips;  // every chip of the order, in order
  int made = 0;                      // chips completed by this run
  int already_done = 0;              // chips an earlier run had completed
};

// seed fig. 2 step 5, keys made by the CMS. The bundle is opened before
// anything is written: a wrong key or a damaged bundle leaves no trace.
Result<PersonalisationReport> PersonalizeFromBundle(ByteView bundle,
                                                    const crypto::PrivateKey& site_key,
                                                    const crypto::Certificate& site_certificate,
                                                    const PersonalisationOptions& options);

// Keys made on the chips, their CSRs signed by the CMS as one batch
// (POST /orgs/{org}/batches/csrs). Before a CSR whose chip may already have
// been certified is sent again, the CMS is searched for a certificate of that
// chip's public key.
Result<PersonalisationReport> PersonalizeOnChip(cms::client::CmsClient& cms, const BatchSpec& spec,
                                                const PersonalisationOptions& options);

// "CN=dev-{n},O=Acme" with {n} = n (as the CMS expands batch subjects).
std::string ExpandSubject(const std::string& pattern, int64_t n);
// The device id a subject names: its CN, if usable as a file name
// ([A-Za-z0-9][A-Za-z0-9._-]*, at most 64 characters).
Result<std::string> DeviceIdOf(const std::string& subject_text);

}  // namespace devid::factory
