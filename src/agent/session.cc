#include "agent/session.h"

#include <mosquitto.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/time.h"

namespace devid::agent {

namespace {

void LibraryInit() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string MosquittoText(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

// One MQTT connection over the device's TLS context, driven by this thread.
class MqttConnection {
 public:
  ~MqttConnection() {
    if (mosq_ != nullptr) {
      if (connected_) {
        mosquitto_disconnect(mosq_);
        mosquitto_loop(mosq_, 100, 1);
      }
      mosquitto_destroy(mosq_);
    }
  }

  Status Open(SSL_CTX* ctx, const std::string& client_id, const RunOptions& o) {
    LibraryInit();
    mosq_ = mosquitto_new(client_id.c_str(), true, this);
    if (mosq_ == nullptr) return MakeError(ErrorCode::kInternal, "mosquitto_new failed");
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    // Without it each connect stalls on delayed ACKs.
    mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
    // The context is used as it is: its verification (the hub's chain to the
    // issuing CA in the chip, its name or address) was set explicitly.
    mosquitto_int_option(mosq_, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    if (int rc = mosquitto_void_option(mosq_, MOSQ_OPT_SSL_CTX, ctx); rc != MOSQ_ERR_SUCCESS) {
      return MakeError(ErrorCode::kInternal, "MOSQ_OPT_SSL_CTX: " + MosquittoText(rc));
    }
    // The hub takes the identity from the certificate; a username equal to
    // the certificate's CN is accepted as well.
    mosquitto_username_pw_set(mosq_, client_id.c_str(), nullptr);
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
      auto* c = static_cast<MqttConnection*>(self);
      c->connack_ = rc;
      c->connected_ = rc == 0;
    });
    mosquitto_disconnect_callback_set(mosq_, [](mosquitto*, void* self, int) {
      static_cast<MqttConnection*>(self)->connected_ = false;
      static_cast<MqttConnection*>(self)->lost_ = true;
    });
    mosquitto_publish_callback_set(mosq_, [](mosquitto*, void* self, int mid) {
      auto* c = static_cast<MqttConnection*>(self);
      if (mid == c->pending_mid_) c->pending_mid_ = -1;
    });
    std::string name = o.server_name.empty() ? o.hub_host : o.server_name;
    int rc = mosquitto_connect(mosq_, o.hub_host.c_str(), o.hub_port, 30);
    if (rc != MOSQ_ERR_SUCCESS) {
      return MakeError(rc == MOSQ_ERR_TLS ? ErrorCode::kVerification : ErrorCode::kIo,
                       "connecting to the hub " + o.hub_host + ":" + std::to_string(o.hub_port) +
                           ": " + MosquittoText(rc));
    }
    // CONNACK.
    for (int i = 0; i < 100 && connack_ < 0 && !lost_; ++i) {
      if (int step = mosquitto_loop(mosq_, 100, 1); step != MOSQ_ERR_SUCCESS) {
        return MakeError(ErrorCode::kIo, "the hub closed the connection during the handshake (" +
                                             MosquittoText(step) + ")");
      }
    }
    if (connack_ != 0) {
      return MakeError(ErrorCode::kAuth, connack_ < 0
                                             ? std::string("the hub did not answer CONNECT")
                                             : "the hub refused the connection: " +
                                                   std::string(mosquitto_connack_string(connack_)));
    }
    return {};
  }

  // Publishes at QoS 1 and waits for the broker's PUBACK.
  Status Publish(const std::string& topic, const std::string& payload) {
    int mid = 0;
    int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                               payload.data(), 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
      return MakeError(ErrorCode::kIo, "publishing: " + MosquittoText(rc));
    }
    pending_mid_ = mid;
    for (int i = 0; i < 100 && pending_mid_ == mid; ++i) {
      if (int step = mosquitto_loop(mosq_, 100, 1); step != MOSQ_ERR_SUCCESS || lost_) {
        return MakeError(ErrorCode::kIo,
                         "the hub closed the connection (" + MosquittoText(step) + ")");
      }
    }
    if (pending_mid_ == mid) return MakeError(ErrorCode::kIo, "no PUBACK from the hub");
    return {};
  }

  // Keeps the connection serviced for `wait` (keep-alive, the broker closing it).
  Status Idle(std::chrono::milliseconds wait, const std::function<bool()>& stop) {
    auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      if (stop && stop()) return {};
      int rc = mosquitto_loop(mosq_, 100, 1);
      if (rc != MOSQ_ERR_SUCCESS || lost_) {
        return MakeError(ErrorCode::kIo,
                         "the hub closed the connection (" + MosquittoText(rc) + ")");
      }
    }
    return {};
  }

 private:
  mosquitto* mosq_ = nullptr;
  int connack_ = -1;
  bool connected_ = false;
  bool lost_ = false;
  int pending_mid_ = -1;
};

std::string Topic(const std::string& id) { return "devices/" + id + "/telemetry"; }

bool RenewalDue(const crypto::Certificate& cert, int64_t now) {
  // Two thirds of the validity.
  int64_t life = cert.not_after() - cert.not_before();
  return now >= cert.not_before() + life * 2 / 3;
}

}  // namespace

Status ConnectAndPublishOnce(Device& device, const RunOptions& o, const std::string& payload) {
  DEVID_ASSIGN_OR_RETURN(std::string id, device.Identity());
  std::string name = o.server_name.empty() ? o.hub_host : o.server_name;
  DEVID_ASSIGN_OR_RETURN(crypto::UniquePtr<SSL_CTX> ctx,
                         device.TlsContext({}, name, true, o.version));
  MqttConnection mqtt;
  DEVID_TRY(mqtt.Open(ctx.get(), id, o));
  return mqtt.Publish(Topic(id), payload);
}

Result<RunSummary> RunTelemetry(Device& device, const RunOptions& o) {
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  auto stopped = [&] { return o.stop && o.stop(); };
  RunSummary summary;
  std::mt19937_64 jitter(std::random_device{}());
  std::chrono::milliseconds backoff = o.backoff_initial;
  std::string name = o.server_name.empty() ? o.hub_host : o.server_name;
  bool warned_no_renewal = false;
  uint64_t failures = 0;
  while (!stopped()) {
    // Renew first when due, so that a connection never starts on a
    // certificate about to end.
    DEVID_ASSIGN_OR_RETURN(auto chain, device.Chain());
    if (RenewalDue(chain.front(), NowUnix())) {
      if (o.cms.url.empty()) {
        if (!warned_no_renewal) log("renewal due, but no CMS was given (--cms): not renewing");
        warned_no_renewal = true;
      } else {
        auto renewed = Reenroll(device, o.cms);
        if (renewed.ok()) {
          ++summary.renewals;
          log("renewed: serial " + renewed->SerialHex() + ", valid until " +
              FormatUtc(renewed->not_after()));
          continue;
        }
        log("renewal failed: " + renewed.error().message);
      }
    }
    DEVID_ASSIGN_OR_RETURN(std::string id, device.Identity());
    Status session = [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(crypto::UniquePtr<SSL_CTX> ctx,
                             device.TlsContext({}, name, true, o.version));
      MqttConnection mqtt;
      DEVID_TRY(mqtt.Open(ctx.get(), id, o));
      ++summary.connections;
      log("connected to " + o.hub_host + ":" + std::to_string(o.hub_port) + " as " + id);
      backoff = o.backoff_initial;
      failures = 0;
      while (!stopped()) {
        nlohmann::json telemetry = {
            {"device", id},
            {"seq", summary.published + 1},
            {"time", FormatUtc(NowUnix())},
            {"certificate_serial", chain.front().SerialHex()},
            {"certificate_not_after", FormatUtc(chain.front().not_after())}};
        DEVID_TRY(mqtt.Publish(Topic(id), telemetry.dump()));
        ++summary.published;
        log("published " + std::to_string(summary.published) + " to " + Topic(id));
        if (o.count != 0 && summary.published >= o.count) return {};
        DEVID_TRY(mqtt.Idle(o.interval, o.stop));
        if (RenewalDue(chain.front(), NowUnix()) && !o.cms.url.empty()) return {};
      }
      return {};
    }();
    if (o.count != 0 && summary.published >= o.count) break;
    if (session.ok()) {  // renewal due, or stopped
      failures = 0;
      continue;
    }
    if (stopped()) break;
    if (++failures == o.max_failures) {
      return session.error().Context("giving up after " + std::to_string(failures) +
                                     " failed connections");
    }
    // Exponential back-off with full jitter, capped.
    std::uniform_int_distribution<int64_t> spread(backoff.count() / 2, backoff.count());
    std::chrono::milliseconds wait(spread(jitter));
    log("connection failed: " + session.error().message + "; retrying in " +
        std::to_string(wait.count()) + " ms");
    auto until = std::chrono::steady_clock::now() + wait;
    while (!stopped() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, o.backoff_max);
  }
  return summary;
}

}  // namespace devid::agent
