// `devid agent run` (seed fig. 4 steps 6-7): mutual TLS to the hub with the
// chip doing the crypto, JSON telemetry to devices/<id>/telemetry over MQTT
// (libmosquitto, given the agent's SSL_CTX), renewal by EST simplereenroll
// once two thirds of the certificate's validity have passed, reconnection
// with exponential back-off and jitter.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "agent/device.h"
#include "agent/enroll.h"
#include "core/result.h"

namespace devid::agent {

struct RunOptions {
  std::string hub_host;
  uint16_t hub_port = 8883;
  std::string server_name;  // the name (or IP) the hub's certificate must carry; default hub_host
  std::chrono::milliseconds interval{5000};
  crypto::TlsVersion version = crypto::TlsVersion::kTls13;
  // Renewal: where to re-enrol. No URL: no renewal (the agent says so when
  // the certificate nears its end).
  CmsEndpoint cms;
  // Stop after this many telemetry messages were acknowledged (0: never).
  uint64_t count = 0;
  // Give up after this many failed connections in a row (0: never).
  uint64_t max_failures = 0;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  // Polled between steps; true ends the run cleanly.
  std::function<bool()> stop;
  // One line per event (connected, published, renewed, refused, back-off).
  std::function<void(const std::string&)> log;
};

struct RunSummary {
  uint64_t published = 0;
  uint64_t connections = 0;
  uint64_t renewals = 0;
};

Result<RunSummary> RunTelemetry(Device& device, const RunOptions& options);

// One connection, one acknowledged publish, a clean disconnect: what the
// fleet measures. `topic_id` overrides the identity in the topic (tests).
Status ConnectAndPublishOnce(Device& device, const RunOptions& options, const std::string& payload);

}  // namespace devid::agent
