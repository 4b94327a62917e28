#include "se/device/nvm.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "crypto/aead.h"
#include "crypto/key.h"

namespace devid::se {

namespace {

constexpr char kImageMagic[4] = {'D', 'V', 'I', 'M'};
constexpr char kFuseMagic[4] = {'D', 'V', 'F', 'U'};
constexpr uint8_t kFormat = 1;      // image format
constexpr uint8_t kFuseFormat = 2;  // fuse format: key, counter, SHA-256 of the committed image
constexpr size_t kHeaderSize = 4 + 1 + 8;  // magic, format, version: the AEAD's associated data
constexpr size_t kFuseBody = 4 + 1 + crypto::kAesGcmKeySize + 8 + 32;
constexpr size_t kFuseSize = kFuseBody + 32;  // + SHA-256 of the body (corruption check)

std::string FusePath(const std::string& image) { return image + ".fuse"; }
std::string NextPath(const std::string& image) { return image + ".new"; }

void PutU64(Bytes& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

Error Tamper(const std::string& why) {
  return MakeError(ErrorCode::kTamper, "NVM tamper detected: " + why);
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

NvmImage::NvmImage(NvmImage&& o) noexcept
    : image_path_(std::move(o.image_path_)),
      key_(std::move(o.key_)),
      committed_(o.committed_),
      version_(o.version_),
      committed_hash_(std::move(o.committed_hash_)),
      lock_fd_(std::exchange(o.lock_fd_, -1)),
      crash_point_(std::move(o.crash_point_)) {}

NvmImage& NvmImage::operator=(NvmImage&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    image_path_ = std::move(o.image_path_);
    key_ = std::move(o.key_);
    committed_ = o.committed_;
    version_ = o.version_;
    committed_hash_ = std::move(o.committed_hash_);
    crash_point_ = std::move(o.crash_point_);
    lock_fd_ = std::exchange(o.lock_fd_, -1);
  }
  return *this;
}

NvmImage::~NvmImage() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

Status NvmImage::Lock() {
  // The lock lives on "<image>.lock": the fuse file itself is replaced by rename on every save.
  std::string path = image_path_ + ".lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return MakeError(ErrorCode::kIo, "cannot open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return MakeError(
        ErrorCode::kIo,
        "the chip " + image_path_ +
            " is in use by another process (a `devid se run` daemon?); use its --socket");
  }
  lock_fd_ = fd;
  return {};
}

Result<NvmImage> NvmImage::Create(const std::string& image_path, ByteView initial,
                                  CrashPoint crash_point) {
  if (Exists(image_path) || Exists(FusePath(image_path))) {
    return MakeError(ErrorCode::kAlreadyExists, "chip image " + image_path + " already exists");
  }
  DEVID_ASSIGN_OR_RETURN(Bytes key, crypto::RandomBytes(crypto::kAesGcmKeySize));
  NvmImage nvm(image_path, SecretBytes(key), 0, std::move(crash_point));
  SecureZero(key.data(), key.size());
  DEVID_TRY(nvm.Lock());
  DEVID_TRY(nvm.WriteFuse(nvm.key_.view(), 0, {}, 0));
  DEVID_TRY(nvm.Save(initial));
  return nvm;
}

Result<NvmImage> NvmImage::Open(const std::string& image_path, CrashPoint crash_point) {
  NvmImage nvm(image_path, SecretBytes(), 0, std::move(crash_point));
  DEVID_TRY(nvm.ReadFuse());
  DEVID_TRY(nvm.Lock());
  return nvm;
}

Status NvmImage::ReadFuse() {
  auto fuse = ReadFile(FusePath(image_path_), 4096);
  if (!fuse.ok()) {
    if (!Exists(image_path_))
      return MakeError(ErrorCode::kNotFound, "no chip image at " + image_path_);
    return Tamper("the chip's fuse file " + FusePath(image_path_) + " is missing or unreadable");
  }
  Bytes& f = *fuse;
  if (f.size() != kFuseSize || std::memcmp(f.data(), kFuseMagic, 4) != 0 || f[4] != kFuseFormat ||
      crypto::Sha256(ByteView(f).first(kFuseBody)) != Bytes(f.begin() + kFuseBody, f.end())) {
    SecureZero(f.data(), f.size());
    return Tamper("the chip's fuse file is damaged");
  }
  key_ = SecretBytes(ByteView(f).subspan(5, crypto::kAesGcmKeySize));
  committed_ = GetU64(f.data() + 5 + crypto::kAesGcmKeySize);
  version_ = committed_;
  committed_hash_.assign(f.begin() + 5 + crypto::kAesGcmKeySize + 8, f.begin() + kFuseBody);
  SecureZero(f.data(), f.size());
  return {};
}

Result<Bytes> NvmImage::Reload() {
  DEVID_TRY(ReadFuse());
  return Load();
}

Status NvmImage::WriteFuse(ByteView key, uint64_t counter, ByteView image_hash, int step_offset) {
  Bytes body(kFuseMagic, kFuseMagic + 4);
  body.push_back(kFuseFormat);
  body.insert(body.end(), key.begin(), key.end());
  PutU64(body, counter);
  Bytes hash(image_hash.begin(), image_hash.end());
  hash.resize(32);
  body.insert(body.end(), hash.begin(), hash.end());
  Bytes digest = crypto::Sha256(body);
  body.insert(body.end(), digest.begin(), digest.end());
  CrashPoint shifted;
  if (crash_point_) shifted = [&](int step) { return crash_point_(step + step_offset); };
  Status s = WriteFileAtomic(FusePath(image_path_), body, 0600, shifted);
  SecureZero(body.data(), body.size());
  return s;
}

Result<Bytes> NvmImage::Load() {
  // The fuse names the one image the chip committed (its SHA-256). A save cut
  // after the fuse was written but before the image took its place leaves
  // that image as "<image>.new": it is rolled forward.
  auto read = ReadFile(image_path_, 64 * 1024 * 1024);
  if (read.ok() && crypto::Sha256(*read) != committed_hash_) {
    auto next = ReadFile(NextPath(image_path_), 64 * 1024 * 1024);
    if (next.ok() && crypto::Sha256(*next) == committed_hash_) {
      if (::rename(NextPath(image_path_).c_str(), image_path_.c_str()) != 0) {
        return MakeError(ErrorCode::kIo, "cannot complete an interrupted save of " + image_path_);
      }
      read = std::move(next);
    }
  }
  if (!read.ok()) return Tamper("the image cannot be read (" + read.error().message + ")");
  const Bytes& image = *read;
  if (image.size() < kHeaderSize + crypto::kAesGcmNonceSize + crypto::kAesGcmTagSize) {
    return Tamper("the image is truncated");
  }
  if (std::memcmp(image.data(), kImageMagic, 4) != 0 || image[4] != kFormat) {
    return Tamper("the image header is not a devid chip image");
  }
  uint64_t version = GetU64(image.data() + 5);
  ByteView all(image);
  auto plain = crypto::AesGcmOpen(key_.view(), all.subspan(kHeaderSize, crypto::kAesGcmNonceSize),
                                  all.first(kHeaderSize),
                                  all.subspan(kHeaderSize + crypto::kAesGcmNonceSize));
  if (!plain.ok())
    return Tamper("the image fails its integrity check (modified, or sealed by another chip)");
  if (version != committed_ || crypto::Sha256(image) != committed_hash_) {
    return Tamper("the image is version " + std::to_string(version) +
                  " but the chip committed version " + std::to_string(committed_) +
                  " (rolled back or replaced)");
  }
  version_ = version;
  return plain;
}

Status NvmImage::Save(ByteView plaintext, SealKey seal_key) {
  uint64_t next = std::max(version_, committed_) + 1;
  // A new chip-unique key makes every earlier image (a copy, a backup)
  // unreadable for good once the fuse holding it is committed.
  SecretBytes key(key_.view());
  if (seal_key == SealKey::kRotate) {
    DEVID_ASSIGN_OR_RETURN(Bytes fresh, crypto::RandomBytes(crypto::kAesGcmKeySize));
    key = SecretBytes(fresh);
    SecureZero(fresh.data(), fresh.size());
  }
  Bytes image(kImageMagic, kImageMagic + 4);
  image.push_back(kFormat);
  PutU64(image, next);
  DEVID_ASSIGN_OR_RETURN(Bytes nonce, crypto::RandomBytes(crypto::kAesGcmNonceSize));
  DEVID_ASSIGN_OR_RETURN(Bytes sealed, crypto::AesGcmSeal(key.view(), nonce, image, plaintext));
  image.insert(image.end(), nonce.begin(), nonce.end());
  image.insert(image.end(), sealed.begin(), sealed.end());
  Bytes hash = crypto::Sha256(image);
  // 1. the new image beside the old one; 2. the fuse (the commit point) names
  // it; 3. it takes the old one's place. A cut before 2 leaves the old state,
  // after 2 the new one (Load rolls forward).
  // In place: until the fuse names its hash, nothing reads it as the state.
  DEVID_TRY(WriteFileDurable(NextPath(image_path_), image, 0600, crash_point_));
  DEVID_TRY(WriteFuse(key.view(), next, hash, 5));
  key_ = std::move(key);
  committed_ = next;
  committed_hash_ = hash;
  version_ = next;
  if (crash_point_ && !crash_point_(11)) return MakeError(ErrorCode::kIo, "simulated power loss");
  if (::rename(NextPath(image_path_).c_str(), image_path_.c_str()) != 0) {
    return MakeError(ErrorCode::kIo, "cannot move the new image of " + image_path_ + " into place");
  }
  return {};
}

}  // namespace devid::se
