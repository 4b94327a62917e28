#include "agent/fleet.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/device.h"
#include "agent/session.h"
#include "cms/client/client.h"
#include "core/bytes.h"
#include "core/time.h"
#include "crypto/key.h"
#include "se/device/secure_element.h"
#include "se/host/client.h"

namespace devid::agent {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// As the factory lays out C001: room for a renewed chain, rewritten with the PIN.
constexpr uint16_t kChainFileSize = 4096;
constexpr uint8_t kAlways = 0x00;
constexpr uint8_t kAfterPin = 0x01;
constexpr uint8_t kNever = 0xFF;

// Chip images are spread over this many folders: every NVM commit renames
// files in its chip's folder, and renames in one folder wait for each other
// (the kernel locks the folder), which a fleet's workers would otherwise do.
constexpr int kImageFolders = 32;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Images go to memory when it can: every NVM commit fsyncs, and a fleet makes
// several commits per chip.
Result<std::string> FreshImageDir(const std::string& run_id) {
  std::error_code ec;
  fs::path base =
      fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
  fs::path dir = base / ("devid-fleet-" + run_id);
  if (!fs::create_directory(dir, ec) || ec) {
    return MakeError(ErrorCode::kIo, "cannot create the image directory " + dir.string() +
                                         (ec ? ": " + ec.message() : ": it exists"));
  }
  fs::permissions(dir, fs::perms::owner_all, ec);
  return dir.string();
}

struct FleetPlan {
  const FleetOptions* options = nullptr;
  std::string dir;
  std::string run_id;
  Bytes ca_key_file;  // CA01: the issuing CA's public key as the chip takes it
  std::optional<crypto::Certificate> issuing_ca;  // stored beside each new certificate
  SecretString pin;
};

// seed fig. 2 step 5 / fig. 3 step 4, as the factory does it for a chip that
// makes its own key: key in slot 0, C001 laid out, CA01 written, locked.
// The chip stays open: the device uses it from here on.
Result<se::ChipClient> PersonaliseChip(const FleetPlan& plan, const std::string& image,
                                       const std::string& serial) {
  DEVID_ASSIGN_OR_RETURN(auto chip, se::SecureElement::Create(image, serial, plan.pin));
  if (plan.options->latency_model) chip->SetLatencyModel(true);
  se::ChipClient client(std::make_unique<se::InProcessTransport>(std::move(chip)));
  DEVID_TRY(client.GenerateKeyPair(0, crypto::KeyType::kEcP256, false));
  DEVID_TRY(client.CreateFile(se::kCertificateChainFile, kChainFileSize, kAlways, kAfterPin));
  DEVID_TRY(se::WriteChipFile(client, se::kCaPublicKeyFile, plan.ca_key_file,
                              plan.ca_key_file.size(), kAlways, kNever));
  DEVID_TRY(client.SetLifecycle(se::Lifecycle::kOperational));
  return client;
}

struct DeviceOutcome {
  bool ok = false;
  std::optional<double> personalise_ms, enroll_ms, publish_ms;
  std::string failure;  // "step: message"
};

// `client`: the worker's connection to the CMS, kept alive across its devices.
DeviceOutcome RunDevice(const FleetPlan& plan, int index, cms::client::CmsClient* client) {
  const FleetOptions& o = *plan.options;
  DeviceOutcome out;
  std::string name = "fleet-" + plan.run_id + "-" + std::to_string(index);
  std::string image = plan.dir + "/" + std::to_string(index % kImageFolders) + "/" + name + ".img";
  auto fail = [&out](const char* step, const Error& e) {
    out.failure = std::string(step) + ": " + e.message;
    return out;
  };

  Clock::time_point start = Clock::now();
  auto made = PersonaliseChip(plan, image, "SE-" + name);
  if (!made.ok()) return fail("chip", made.error());
  ChipOptions chip;
  chip.image = image;
  chip.slot = 0;
  chip.pin = plan.pin;
  auto device = Device::Adopt(chip, std::move(*made));
  if (!device.ok()) return fail("chip", device.error());
  out.personalise_ms = MillisecondsSince(start);

  start = Clock::now();
  EnrollOptions enroll;
  enroll.cms = o.cms;
  enroll.token = o.token;
  enroll.subject = "CN=" + name;
  enroll.issuer = plan.issuing_ca;
  enroll.client = client;
  auto enrolled = Enroll(**device, enroll);
  if (!enrolled.ok()) return fail("enrol", enrolled.error());
  out.enroll_ms = MillisecondsSince(start);

  start = Clock::now();
  RunOptions run;
  run.hub_host = o.hub_host;
  run.hub_port = o.hub_port;
  run.server_name = o.server_name;
  nlohmann::json telemetry = {{"device", enrolled->identity},
                              {"seq", 1},
                              {"time", FormatUtc(NowUnix())},
                              {"fleet_run", plan.run_id},
                              {"certificate_serial", enrolled->certificate.SerialHex()}};
  Status published = ConnectAndPublishOnce(**device, run, telemetry.dump());
  if (!published.ok()) return fail("publish", published.error());
  out.publish_ms = MillisecondsSince(start);
  out.ok = true;
  return out;
}

Result<crypto::Certificate> IssuingCa(const FleetOptions& o) {
  if (o.issuing_ca) return *o.issuing_ca;
  DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client,
                         cms::client::CmsClient::Create({o.cms.url, o.cms.ca_file, o.token}));
  auto cacerts = client.EstCaCerts(o.cms.org, o.cms.ca);
  if (!cacerts.ok()) return cacerts.error().Context("fetching the issuing CA (EST cacerts)");
  if (cacerts->empty()) return MakeError(ErrorCode::kNotFound, "EST cacerts returned nothing");
  // RFC 7030 §4.1.3: the issuing CA first is what devid serves.
  return cacerts->front();
}

std::string Milliseconds(double ms) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(ms < 10 ? 2 : 1);
  s << ms;
  return s.str();
}

}  // namespace

double FleetReport::Percentile(const std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::vector<std::string> FleetReport::SummaryLines() const {
  std::vector<std::string> lines;
  std::ostringstream head;
  head.setf(std::ios::fixed);
  head.precision(1);
  head << "fleet " << run_id << ": " << ok << " ok / " << failed << " failed of " << devices
       << " devices in " << seconds << " s on " << concurrency << " workers: " << DevicesPerSecond()
       << " devices/s";
  lines.push_back(head.str());
  auto latency = [&](const char* what, const std::vector<double>& v) {
    lines.push_back(std::string(what) + " ms: p50 " + Milliseconds(Percentile(v, 50)) + ", p95 " +
                    Milliseconds(Percentile(v, 95)) + ", p99 " + Milliseconds(Percentile(v, 99)) +
                    " (" + std::to_string(v.size()) + " devices)");
  };
  latency("chip personalisation", personalise_ms);
  latency("enrol (EST simpleenroll)", enroll_ms);
  latency("connect+publish", publish_ms);
  for (const auto& [cause, count] : failures) {
    lines.push_back("failed: " + std::to_string(count) + " x " + cause);
  }
  return lines;
}

Result<FleetReport> SimulateFleet(const FleetOptions& o) {
  if (o.devices <= 0) return MakeError(ErrorCode::kInvalidInput, "the fleet needs devices (>= 1)");
  if (o.cms.url.empty() || o.cms.org.empty() || o.cms.ca.empty() || o.token.empty()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "the fleet needs the CMS URL, organization, CA and an enrolment token");
  }
  if (o.hub_host.empty()) return MakeError(ErrorCode::kInvalidInput, "the fleet needs a hub");
  FleetPlan plan;
  plan.options = &o;
  plan.run_id = o.run_id;
  if (plan.run_id.empty()) {
    DEVID_ASSIGN_OR_RETURN(Bytes r, crypto::RandomBytes(4));
    plan.run_id = HexEncode(r);
    std::transform(plan.run_id.begin(), plan.run_id.end(), plan.run_id.begin(),
                   [](char c) { return static_cast<char>(std::tolower(c)); });
  }
  {
    // One PIN for the run's chips: they live and die in this process.
    DEVID_ASSIGN_OR_RETURN(Bytes r, crypto::RandomBytes(8));
    std::string digits = HexEncode(r);
    plan.pin = SecretString(digits);
    SecureZero(digits.data(), digits.size());
    SecureZero(r.data(), r.size());
  }
  DEVID_ASSIGN_OR_RETURN(crypto::Certificate ca, IssuingCa(o));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey ca_key, ca.public_key());
  DEVID_ASSIGN_OR_RETURN(plan.ca_key_file, se::KeyFileContent(ca_key));
  plan.issuing_ca = ca;

  bool own_dir = o.dir.empty();
  if (own_dir) {
    DEVID_ASSIGN_OR_RETURN(plan.dir, FreshImageDir(plan.run_id));
  } else {
    std::error_code ec;
    fs::create_directories(o.dir, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot create " + o.dir + ": " + ec.message());
    plan.dir = o.dir;
  }
  for (int i = 0; i < std::min(o.devices + 1, kImageFolders); ++i) {
    std::error_code ec;
    fs::path folder = fs::path(plan.dir) / std::to_string(i);
    fs::create_directory(folder, ec);
    if (ec)
      return MakeError(ErrorCode::kIo, "cannot create " + folder.string() + ": " + ec.message());
  }

  FleetReport report;
  report.run_id = plan.run_id;
  report.devices = o.devices;
  int cores = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  report.concurrency = std::min(o.devices, o.concurrency > 0 ? o.concurrency : 2 * cores);

  std::vector<DeviceOutcome> outcomes(static_cast<size_t>(o.devices));
  std::atomic<int> next{0}, done{0}, failed{0};
  std::mutex mu;
  std::condition_variable finished;
  bool all_done = false;

  Clock::time_point start = Clock::now();
  std::thread reporter;
  if (o.progress) {
    reporter = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!finished.wait_for(lock, o.progress_interval, [&] { return all_done; })) {
        o.progress(done.load(), failed.load(), o.devices);
      }
    });
  }
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(report.concurrency));
  for (int w = 0; w < report.concurrency; ++w) {
    workers.emplace_back([&] {
      auto client = cms::client::CmsClient::Create({o.cms.url, o.cms.ca_file, o.token});
      for (int i = next++; i < o.devices; i = next++) {
        DeviceOutcome outcome = client.ok() ? RunDevice(plan, i + 1, &*client) : DeviceOutcome{};
        if (!client.ok()) outcome.failure = "enrol: " + client.error().message;
        (outcome.ok ? done : failed)++;
        outcomes[static_cast<size_t>(i)] = std::move(outcome);
      }
    });
  }
  for (auto& w : workers) w.join();
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  {
    std::lock_guard<std::mutex> lock(mu);
    all_done = true;
  }
  finished.notify_all();
  if (reporter.joinable()) reporter.join();
  if (own_dir) {
    std::error_code ec;
    fs::remove_all(plan.dir, ec);
  }

  for (const DeviceOutcome& d : outcomes) {
    if (d.personalise_ms) report.personalise_ms.push_back(*d.personalise_ms);
    if (d.enroll_ms) report.enroll_ms.push_back(*d.enroll_ms);
    if (d.publish_ms) report.publish_ms.push_back(*d.publish_ms);
    if (d.ok) {
      ++report.ok;
    } else {
      ++report.failed;
      ++report.failures[d.failure];
    }
  }
  for (auto* v : {&report.personalise_ms, &report.enroll_ms, &report.publish_ms}) {
    std::sort(v->begin(), v->end());
  }
  return report;
}

}  // namespace devid::agent
