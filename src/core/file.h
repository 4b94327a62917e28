// Whole-file reads and atomic writes.
#pragma once

#include <functional>
#include <string>

#include "core/bytes.h"
#include "core/result.h"
#include "core/secret.h"

namespace devid {

// Reads a file whole; refuses files larger than max_size (untrusted inputs).
Result<Bytes> ReadFile(const std::string& path, size_t max_size = 16 * 1024 * 1024);
// The first line of a small file holding a secret (passphrase, PIN), without
// its line ending; the read buffer is wiped. `what` names it in errors.
Result<SecretString> ReadSecretLine(const std::string& path, std::string_view what);

// Writes to a temporary file in the same folder, fsyncs it, renames it over
// `path` and fsyncs the folder, so readers see the old or the new content, never half.
// A symbolic link is refused; a device or pipe is written in place (without
// blocking on a pipe that has no reader).
Status WriteFileAtomic(const std::string& path, ByteView data, unsigned mode = 0644);

// Checks, before any work is done, that WriteFileAtomic could write `path`:
// not a symbolic link, not a directory, and its folder exists.
Status CheckOutputPath(const std::string& path);

// Power-loss testing: called before each step of an atomic write (1: temporary
// file created, 2: half the bytes written, 3: all written, 4: fsynced,
// 5: renamed into place); returning false stops the write right there, leaving
// the files as a power cut would, and the call fails with kIo.
using CrashPoint = std::function<bool(int step)>;
Status WriteFileAtomic(const std::string& path, ByteView data, unsigned mode,
                       const CrashPoint& crash_point);

// Writes `path` in place (created or truncated, a symbolic link refused) and
// fsyncs it: half-written after a power cut. Only for a file whose reader
// checks it against a record committed after it (the chip's next image,
// named by its hash in the fuse file), where the atomic write's extra
// rename and folder sync buy nothing. Crash steps as WriteFileAtomic's, 5
// being after the close.
Status WriteFileDurable(const std::string& path, ByteView data, unsigned mode,
                        const CrashPoint& crash_point);

}  // namespace devid
