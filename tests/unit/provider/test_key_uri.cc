#include <gtest/gtest.h>

#include "provider/key_uri.h"

namespace devid::provider {
namespace {

TEST(KeyUri, NamesOneChipAndASlot) {
  auto a = ParseKeyUri("devid:socket=/run/devid/chip.sock;slot=0");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->socket, "/run/devid/chip.sock");
  EXPECT_EQ(a->slot, 0);
  EXPECT_EQ(a->chip(), "socket=/run/devid/chip.sock");
  auto b = ParseKeyUri("devid:slot=15;image=chip.img;pin-file=pin.txt");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->image, "chip.img");
  EXPECT_EQ(b->slot, 15);
  EXPECT_EQ(b->pin_file, "pin.txt");
  EXPECT_EQ(b->chip(), "image=chip.img");
}

TEST(KeyUri, MalformedUrisAreRefusedWithTheReason) {
  const std::pair<const char*, const char*> cases[] = {
      {"file:chip.img", "starts with devid:"},
      {"devid:image=chip.img", "needs slot="},
      {"devid:slot=0", "exactly one of image= and socket="},
      {"devid:image=a;socket=b;slot=0", "exactly one of image= and socket="},
      {"devid:image=a;slot=16", "0 to 15"},
      {"devid:image=a;slot=-1", "0 to 15"},
      {"devid:image=a;slot=1x", "0 to 15"},
      {"devid:image=a;slot=1;slot=2", "given twice"},
      {"devid:image=a;image=b;slot=1", "given twice"},
      {"devid:image=a;slot=1;colour=red", "unknown chip key URI attribute 'colour'"},
      {"devid:image=;slot=1", "not name=value"},
      {"devid:image=a;;slot=1", "not name=value"},
  };
  for (const auto& [uri, reason] : cases) {
    auto r = ParseKeyUri(uri);
    ASSERT_FALSE(r.ok()) << uri;
    EXPECT_NE(r.error().message.find(reason), std::string::npos)
        << uri << ": " << r.error().message;
  }
}

}  // namespace
}  // namespace devid::provider

namespace devid::provider {
namespace {

TEST(KeyReference, DerBodyRoundTripsAndRefusesOthers) {
  for (std::string uri : {std::string("devid:image=chip.img;slot=0"),
                          "devid:socket=/" + std::string(200, 'a') + ";slot=3",
                          "devid:socket=/" + std::string(600, 'b') + ";slot=15"}) {
    auto der = EncodeKeyReferenceDer(uri);
    ASSERT_TRUE(der.ok()) << der.error().message;
    auto back = ParseKeyReferenceDer(*der);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(*back, uri);
  }
  EXPECT_FALSE(EncodeKeyReferenceDer("file:chip.img").ok());
  EXPECT_FALSE(ParseKeyReferenceDer(Bytes{0x04, 0x01, 'x'}).ok());       // not a UTF8String
  EXPECT_FALSE(ParseKeyReferenceDer(Bytes{0x0C, 0x81, 0x05}).ok());      // non-minimal length
  EXPECT_FALSE(ParseKeyReferenceDer(Bytes{0x0C, 0x05, 'd', 'e'}).ok());  // truncated
  Bytes not_devid = {0x0C, 0x03, 'a', 'b', 'c'};
  EXPECT_FALSE(ParseKeyReferenceDer(not_devid).ok());
}

}  // namespace
}  // namespace devid::provider
