#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "core/bytes.h"
#include "core/file.h"
#include "core/result.h"
#include "core/secret.h"
#include "core/time.h"

namespace devid {
namespace {

TEST(Hex, RoundTripsAndNormalises) {
  Bytes b = {0x00, 0x0A, 0xFF};
  EXPECT_EQ(HexEncode(b), "000AFF");
  auto d = HexDecode("0x00:0a:ff");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, b);
  auto odd = HexDecode("abc");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(*odd, (Bytes{0x0A, 0xBC}));
}

TEST(Hex, RejectsNonHex) {
  auto r = HexDecode("12zz");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidInput);
  EXPECT_FALSE(HexDecode("").ok());
}

Result<int> Half(int x) {
  if (x % 2 != 0) return MakeError(ErrorCode::kInvalidInput, "odd");
  return x / 2;
}
Result<int> Quarter(int x) {
  DEVID_ASSIGN_OR_RETURN(int h, Half(x));
  DEVID_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Result, PropagatesErrorsWithContext) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().Context("quartering").message, "quartering: odd");
}

TEST(SecretString, CopiesAndMovesKeepValue) {
  SecretString a("hunter2");
  SecretString b = a;
  SecretString c = std::move(a);
  EXPECT_EQ(b.reveal(), "hunter2");
  EXPECT_EQ(c.reveal(), "hunter2");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is wiped
}

TEST(File, AtomicWriteReplacesWholeAndReadRespectsLimit) {
  auto dir = std::filesystem::temp_directory_path() / ("devid-core-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "f").string();
  ASSERT_TRUE(WriteFileAtomic(path, AsBytes("first")).ok());
  ASSERT_TRUE(WriteFileAtomic(path, AsBytes("second")).ok());
  auto r = ReadFile(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(AsString(*r), "second");
  EXPECT_EQ(ReadFile(path, 3).error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(ReadFile((dir / "missing").string()).error().code, ErrorCode::kIo);
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
  std::filesystem::remove_all(dir);
}

TEST(Time, FormatsUtc) { EXPECT_EQ(FormatUtc(0), "1970-01-01T00:00:00Z"); }

}  // namespace
}  // namespace devid

namespace devid {
namespace {

TEST(File, AtomicWriteRefusesSymlinksAndWritesDevicesInPlace) {
  auto dir =
      std::filesystem::temp_directory_path() / ("devid-core-link-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::path target = dir / "target";
  std::filesystem::path link = dir / "link";
  ASSERT_TRUE(WriteFileAtomic(target.string(), AsBytes("old")).ok());
  std::filesystem::create_symlink(target, link);
  // Another user's link in a shared folder must not redirect the write.
  auto r = WriteFileAtomic(link.string(), AsBytes("new"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos);
  EXPECT_EQ(AsString(*ReadFile(target.string())), "old");
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  // A character device is written in place and stays a device.
  ASSERT_TRUE(WriteFileAtomic("/dev/null", AsBytes("x")).ok());
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
  // A pipe without a reader fails at once instead of blocking.
  std::string fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(WriteFileAtomic(fifo, AsBytes("x")).ok());
  EXPECT_EQ(WriteFileAtomic(dir.string(), AsBytes("x")).error().code, ErrorCode::kIo);
  std::filesystem::remove_all(dir);
}

TEST(SecretString, AssignmentReplacesValue) {
  SecretString a("first-secret");
  SecretString b("second");
  a = b;
  EXPECT_EQ(a.reveal(), "second");
  a = SecretString("third");
  EXPECT_EQ(a.reveal(), "third");
}

}  // namespace
}  // namespace devid

namespace devid {
namespace {

TEST(File, DurableWriteTruncatesInPlaceAndRefusesSymlinks) {
  auto dir =
      std::filesystem::temp_directory_path() / ("devid-core-durable-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string path = (dir / "next").string();
  ASSERT_TRUE(WriteFileDurable(path, AsBytes("a longer first content"), 0600, {}).ok());
  ASSERT_TRUE(WriteFileDurable(path, AsBytes("short"), 0600, {}).ok());
  EXPECT_EQ(AsString(*ReadFile(path)), "short");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::path target = dir / "target";
  std::filesystem::path link = dir / "link";
  ASSERT_TRUE(WriteFileAtomic(target.string(), AsBytes("old")).ok());
  std::filesystem::create_symlink(target, link);
  EXPECT_FALSE(WriteFileDurable(link.string(), AsBytes("new"), 0600, {}).ok());
  EXPECT_EQ(AsString(*ReadFile(target.string())), "old");
  // Nor through a second hard link, nor into a FIFO (without blocking).
  std::filesystem::path hard = dir / "hard";
  std::filesystem::create_hard_link(target, hard);
  EXPECT_FALSE(WriteFileDurable(hard.string(), AsBytes("new"), 0600, {}).ok());
  EXPECT_EQ(AsString(*ReadFile(target.string())), "old");
  std::string fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(WriteFileDurable(fifo, AsBytes("new"), 0600, {}).ok());
  // A power cut after half the bytes leaves half of them: the reader's check must catch it.
  auto cut =
      WriteFileDurable(path, AsBytes("0123456789"), 0600, [](int step) { return step != 3; });
  EXPECT_FALSE(cut.ok());
  EXPECT_EQ(AsString(*ReadFile(path)), "0123456789");  // step 3: all written, not yet fsynced
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace devid
