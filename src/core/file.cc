#include "core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace devid {

namespace {
Error IoError(const std::string& what, const std::string& path) {
  return MakeError(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}
}  // namespace

Result<Bytes> ReadFile(const std::string& path, size_t max_size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Error e = IoError("cannot stat", path);
    ::close(fd);
    return e;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return MakeError(ErrorCode::kIo, path + " is not a regular file");
  }
  if (static_cast<size_t>(st.st_size) > max_size) {
    ::close(fd);
    return MakeError(ErrorCode::kInvalidInput,
                     path + " is larger than " + std::to_string(max_size) + " bytes");
  }
  Bytes out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = IoError("cannot read", path);
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  ::close(fd);
  return out;
}

namespace {
Status WriteAll(int fd, ByteView data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("cannot write", path);
    done += static_cast<size_t>(n);
  }
  return {};
}
}  // namespace

Status CheckOutputPath(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode))
      return MakeError(ErrorCode::kIo, path + " is a symbolic link; give the file's real path");
    if (S_ISDIR(st.st_mode)) return MakeError(ErrorCode::kIo, path + " is a directory");
    return {};
  }
  std::filesystem::path p(path);
  std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kIo, "the folder of " + path + " does not exist");
  }
  return {};
}

namespace {

// Steps 2-4 of a power-loss-tested write (CrashPoint): half the bytes, the
// rest, fsync. On failure `*out_cut` tells a simulated cut (after which the
// caller leaves its files as they are) from a real error.
Status WriteAndSync(int fd, ByteView data, const std::string& path, const CrashPoint& crash_point,
                    bool* out_cut) {
  auto power_cut = [&](int step) {
    *out_cut = crash_point && !crash_point(step);
    return *out_cut;
  };
  const Error cut = MakeError(ErrorCode::kIo, "simulated power loss while writing " + path);
  size_t half = data.size() / 2;
  DEVID_TRY(WriteAll(fd, data.first(half), path));
  if (power_cut(2)) return cut;
  DEVID_TRY(WriteAll(fd, data.subspan(half), path));
  if (power_cut(3)) return cut;
  if (::fsync(fd) != 0) return IoError("cannot fsync", path);
  if (power_cut(4)) return cut;
  return {};
}

}  // namespace

Status WriteFileAtomic(const std::string& requested, ByteView data, unsigned mode) {
  return WriteFileAtomic(requested, data, mode, CrashPoint());
}

Status WriteFileAtomic(const std::string& requested, ByteView data, unsigned mode,
                       const CrashPoint& crash_point) {
  auto power_cut = [&](int step) { return crash_point && !crash_point(step); };
  const Error cut = MakeError(ErrorCode::kIo, "simulated power loss while writing " + requested);
  const std::string& path = requested;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    // Following a link in user space would bypass the kernel's protections for
    // links in shared folders (another user's link could redirect the write).
    if (S_ISLNK(st.st_mode)) {
      return MakeError(ErrorCode::kIo, path + " is a symbolic link; give the file's real path");
    }
    if (S_ISDIR(st.st_mode)) return MakeError(ErrorCode::kIo, path + " is a directory");
    if (!S_ISREG(st.st_mode)) {
      // A device or pipe is written in place; never block on a pipe without a reader.
      int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return IoError("cannot open", path);
      Status s = WriteAll(fd, data, path);
      ::close(fd);
      return s;
    }
  }
  std::filesystem::path target(path);
  std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  // mkstemp replaces the six trailing template characters.
  std::string tmp =
      (dir / ("." + target.filename().string() + ".tmp" + std::string(6, 'X'))).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return IoError("cannot create a temporary file for", path);
  auto fail = [&](const char* what) {
    Error e = IoError(what, path);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  // A simulated power cut leaves the temporary file behind, as a real one would.
  auto cut_here = [&] {
    ::close(fd);
    return cut;
  };
  if (power_cut(1)) return cut_here();
  if (::fchmod(fd, mode) != 0) return fail("cannot set mode of");
  bool was_cut = false;
  if (Status written = WriteAndSync(fd, data, path, crash_point, &was_cut); !written.ok()) {
    if (was_cut) return cut_here();
    ::close(fd);
    ::unlink(tmp.c_str());
    return written.error();
  }
  if (::close(fd) != 0) {
    Error e = IoError("cannot close", path);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = IoError("cannot rename into", path);
    ::unlink(tmp.c_str());
    return e;
  }
  if (power_cut(5)) return cut;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

Status WriteFileDurable(const std::string& path, ByteView data, unsigned mode,
                        const CrashPoint& crash_point) {
  auto power_cut = [&](int step) { return crash_point && !crash_point(step); };
  const Error cut = MakeError(ErrorCode::kIo, "simulated power loss while writing " + path);
  // Non-blocking: a FIFO put in the file's place must not hang the writer.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
                  static_cast<mode_t>(mode));
  if (fd < 0) return IoError("cannot open", path);
  auto fail = [&](const char* what) {
    Error e = IoError(what, path);
    ::close(fd);
    return e;
  };
  // A file left from before must be a plain file of ours alone (no other
  // link to it, no other owner), and it gets `mode` like a new one.
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail("cannot stat");
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != ::geteuid()) {
    ::close(fd);
    return MakeError(ErrorCode::kIo, path + " is not a regular file of this user's alone");
  }
  if (::ftruncate(fd, 0) != 0) return fail("cannot truncate");
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return fail("cannot set mode of");
  auto cut_here = [&] {
    ::close(fd);
    return cut;
  };
  if (power_cut(1)) return cut_here();
  bool was_cut = false;
  if (Status written = WriteAndSync(fd, data, path, crash_point, &was_cut); !written.ok()) {
    if (was_cut) return cut_here();
    ::close(fd);
    return written.error();
  }
  if (::close(fd) != 0) return IoError("cannot close", path);
  if (power_cut(5)) return cut;
  return {};
}

Result<SecretString> ReadSecretLine(const std::string& path, std::string_view what) {
  DEVID_ASSIGN_OR_RETURN(Bytes content, ReadFile(path, 4096));
  std::string_view text = AsString(content);
  SecretString secret(text.substr(0, text.find_first_of("\r\n")));
  SecureZero(content.data(), content.size());
  if (secret.empty()) {
    return MakeError(ErrorCode::kAuth, "the " + std::string(what) + " file " + path + " is empty");
  }
  return secret;
}

}  // namespace devid
