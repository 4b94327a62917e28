// The chip's non-volatile memory: one image file per chip, sealed with
// AES-256-GCM under the chip-unique key and version-counted.
//
// The chip-unique key and the highest committed version live in
// "<image>.fuse", which stands for the chip's one-time-programmable fuses.
// (A software chip is a development and simulation tool: whoever can read both
// files holds the chip's secrets. What the image format gives is detection:
// any changed or missing byte, an image from another chip, or an older image
// put back in place of a newer one puts the chip in its tamper state.)
#pragma once

#include <cstdint>
#include <string>

#include "core/bytes.h"
#include "core/file.h"
#include "core/result.h"
#include "core/secret.h"

namespace devid::se {

enum class SealKey { kKeep, kRotate };

class NvmImage {
 public:
  // A new chip: fresh chip-unique key and counter in the fuse file, image at version 1.
  // Refuses to overwrite an existing image or fuse file.
  static Result<NvmImage> Create(const std::string& image_path, ByteView initial,
                                 CrashPoint crash_point = {});
  // An existing chip; kTamper if its fuse file is damaged.
  static Result<NvmImage> Open(const std::string& image_path, CrashPoint crash_point = {});

  // Reads and authenticates the image. kTamper for a modified or truncated
  // image, one sealed by another chip, or one older than the committed version.
  Result<Bytes> Load();
  // Seals the next version. The fuse file is the commit point: it records the
  // version and the SHA-256 of the new image, which is written beside the old
  // one first and moved into place after. A power cut at any point leaves the
  // old or the new state, never a broken one and never a choice of both.
  // kRotate seals under a fresh chip-unique key (termination).
  Status Save(ByteView plaintext, SealKey seal_key = SealKey::kKeep);
  // After a failed Save: what the fuse and the disk hold now (the old state or
  // the new one), read as at power-up, so that the chip's memory can follow.
  Result<Bytes> Reload();

  NvmImage(NvmImage&& other) noexcept;
  NvmImage& operator=(NvmImage&& other) noexcept;
  NvmImage(const NvmImage&) = delete;
  NvmImage& operator=(const NvmImage&) = delete;
  ~NvmImage();

  uint64_t version() const { return version_; }
  const std::string& path() const { return image_path_; }

 private:
  NvmImage(std::string image_path, SecretBytes key, uint64_t committed, CrashPoint crash_point)
      : image_path_(std::move(image_path)),
        key_(std::move(key)),
        committed_(committed),
        version_(committed),
        crash_point_(std::move(crash_point)) {}
  Status ReadFuse();
  Status WriteFuse(ByteView key, uint64_t counter, ByteView image_hash, int step_offset);

  std::string image_path_;
  SecretBytes key_;
  uint64_t committed_;
  uint64_t version_;
  Bytes committed_hash_;  // SHA-256 of the committed image, from the fuse
  // An exclusive lock on the fuse file while this chip is powered: two
  // processes running one chip would overwrite each other's state.
  int lock_fd_ = -1;
  Status Lock();
  CrashPoint crash_point_;
};

}  // namespace devid::se
