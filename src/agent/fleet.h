// `devid fleet simulate` (seed fig. 4 at scale): many virtual devices in one
// process, each with a chip of its own, running the whole zero-touch flow at
// once: chip made and given its key and the issuing CA's public key (as the
// factory would), EST simpleenroll with an enrolment token, mutual TLS to the
// hub through the chip, one acknowledged telemetry message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/enroll.h"
#include "core/result.h"
#include "crypto/certificate.h"

namespace devid::agent {

struct FleetOptions {
  int devices = 0;
  CmsEndpoint cms;
  std::string token;  // an API token of the enrollment role
  std::string hub_host;
  uint16_t hub_port = 8883;
  std::string server_name;  // default hub_host
  // Worker threads, each running one device at a time; 0: twice the cores.
  int concurrency = 0;
  // Each chip delays its commands as a real one would (SecureElement::SetLatencyModel).
  bool latency_model = false;
  // Where the chip images go. Empty: a fresh directory under /dev/shm (else
  // the system's temporary directory), removed at the end.
  std::string dir;
  // Names the run in device subjects (CN=fleet-<run>-<i>); empty: random.
  std::string run_id;
  // The issuing CA certificate to put in the chips; none: fetched from the
  // CMS once (EST cacerts).
  std::optional<crypto::Certificate> issuing_ca;
  // Called about every `progress_interval` while the fleet runs, from a thread of its own.
  std::function<void(int done, int failed, int total)> progress;
  std::chrono::milliseconds progress_interval{1000};
};

struct FleetReport {
  std::string run_id;
  int devices = 0;
  int ok = 0;
  int failed = 0;
  int concurrency = 0;
  double seconds = 0;  // wall time of the whole fleet
  // Per device that got that far, milliseconds, ascending.
  std::vector<double> personalise_ms;  // chip made, key, CA01, operational, opened
  std::vector<double> enroll_ms;       // EST simpleenroll, answer checked and stored
  std::vector<double> publish_ms;      // connect, mutual TLS, QoS 1 publish acknowledged
  // Failed devices by the step and first error message: "enrol: ...".
  std::map<std::string, int> failures;

  double DevicesPerSecond() const { return seconds > 0 ? ok / seconds : 0; }
  // The p-th percentile (0..100, nearest rank) of ascending `values`; 0 when empty.
  static double Percentile(const std::vector<double>& values, double p);
  // The summary as printed by `devid fleet simulate`: one line each.
  std::vector<std::string> SummaryLines() const;
};

// Runs the fleet. An error only when it could not start (options, the CA
// certificate, the image directory); a device's failure is in the report.
Result<FleetReport> SimulateFleet(const FleetOptions& options);

}  // namespace devid::agent
