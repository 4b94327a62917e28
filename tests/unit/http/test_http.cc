#include <gtest/gtest.h>

#include "http/metrics.h"
#include "http/server.h"

namespace devid::http {
namespace {

TEST(Router, PatternsMethodsAndParameters) {
  Router router;
  router.Add("GET", "/api/v1/orgs/{org}/certificates/{serial}", [](const Request& r) {
    return Response{200, "text/plain", r.params.at("org") + "/" + r.params.at("serial"), {}};
  });
  router.Add("POST", "/api/v1/orgs", [](const Request&) { return Response{201, "", "made", {}}; });
  router.Add("GET", "/boom", [](const Request&) -> Response { throw std::runtime_error("bug"); });
  Request r;
  std::string route;
  r.method = "GET";
  r.path = "/api/v1/orgs/acme/certificates/4F01";
  Response ok = router.Dispatch(r, &route);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "acme/4F01");
  EXPECT_EQ(route, "/api/v1/orgs/{org}/certificates/{serial}");
  r.path = "/api/v1/orgs";
  EXPECT_EQ(router.Dispatch(r, &route).status, 405);  // the path exists, not for GET
  r.method = "POST";
  EXPECT_EQ(router.Dispatch(r, &route).status, 201);
  r.path = "/api/v1/orgs/acme";
  Response missing = router.Dispatch(r, &route);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, R"({"error":{"code":"not_found","message":"no such resource"}})");
  r.method = "GET";
  r.path = "/boom";
  EXPECT_EQ(router.Dispatch(r, &route).status, 500);  // a throwing handler is contained
}

TEST(Metrics, CountersAndHistogramsInTextFormat) {
  Metrics m;
  m.Increment("devid_issued_total", "org=\"acme\"");
  m.Increment("devid_issued_total", "org=\"acme\"", 2);
  m.Observe("devid_latency_seconds", "", 0.003);
  std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE devid_issued_total counter\ndevid_issued_total{org=\"acme\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("devid_latency_seconds_bucket{le=\"0.0025\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("devid_latency_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("devid_latency_seconds_count 1\n"), std::string::npos);
}

TEST(JsonErrors, InvalidUtf8InMessagesIsReplacedNotThrown) {
  Response r = JsonError(400, "bad", std::string("caf\xC3", 4));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"code\":\"bad\""), std::string::npos);
}

}  // namespace
}  // namespace devid::http
