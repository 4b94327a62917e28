#include <gtest/gtest.h>

#include "pkcs11/config.h"

namespace devid::pkcs11 {
namespace {

TEST(ChipList, EnvironmentAndFileForms) {
  auto env = ParseChipList("image=/a/chip.img,socket=/run/devid/chip.sock", ',');
  ASSERT_TRUE(env.ok()) << env.error().message;
  EXPECT_EQ(*env, (std::vector<std::string>{"image=/a/chip.img", "socket=/run/devid/chip.sock"}));
  auto file = ParseChipList("# chips\n\nimage=/a.img\r\n  socket=/b.sock  \n", '\n');
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(*file, (std::vector<std::string>{"image=/a.img", "socket=/b.sock"}));
}

TEST(ChipList, BadEntriesAreRefusedWithTheirPlace) {
  auto bad = ParseChipList("image=/a.img\nfile=/b\n", '\n');
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("chip entry 2"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(ParseChipList("image=", ',').ok());
  EXPECT_FALSE(ParseChipList("# only a comment\n", '\n').ok());
  EXPECT_FALSE(ParseChipList("", ',').ok());
}

}  // namespace
}  // namespace devid::pkcs11
