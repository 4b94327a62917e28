// Secrets (passphrases, PINs, private-key bytes) that zero their memory when
// they go away and never print themselves.
#pragma once

#include <memory>
#include <string>

#include <string_view>
#include "core/bytes.h"

namespace devid {

// Zeroes memory in a way the optimiser cannot remove (forwards to OPENSSL_cleanse).
void SecureZero(void* data, size_t size);

// An allocator that zeroes what it gives back: containers of secrets (the
// chip's serialized state) leave nothing behind when they grow or go away.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) {
    SecureZero(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <typename U>
  bool operator==(const WipingAllocator<U>&) const {
    return true;
  }
};
using WipingString = std::basic_string<char, std::char_traits<char>, WipingAllocator<char>>;

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string_view value) : value_(value) {}
  SecretString(const SecretString& other) : value_(other.value_) {}
  // Moves copy and then wipe: moving a short std::string copies its inline
  // buffer and would leave the bytes behind in the source.
  SecretString(SecretString&& other) noexcept : value_(other.value_) { other.Wipe(); }
  SecretString& operator=(const SecretString& other) {
    if (this != &other) {
      Wipe();
      value_ = other.value_;
    }
    return *this;
  }
  SecretString& operator=(SecretString&& other) noexcept {
    if (this != &other) {
      Wipe();
      value_ = other.value_;
      other.Wipe();
    }
    return *this;
  }
  ~SecretString() { Wipe(); }

  std::string_view reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

 private:
  // Zeroes the whole buffer (capacity, not just size), then empties it.
  void Wipe() {
    value_.resize(value_.capacity());
    SecureZero(value_.data(), value_.size());
    value_.clear();
  }
  std::string value_;
};

// Key bytes that zero themselves when they go away (move-only).
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(ByteView value) : value_(value.begin(), value.end()) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept : value_(std::move(other.value_)) {
    other.value_.clear();
  }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      Wipe();
      value_ = std::move(other.value_);  // vector moves its buffer: nothing is left behind
      other.value_.clear();
    }
    return *this;
  }
  ~SecretBytes() { Wipe(); }

  ByteView view() const { return value_; }
  size_t size() const { return value_.size(); }

 private:
  void Wipe() {
    SecureZero(value_.data(), value_.size());
    value_.clear();
  }
  Bytes value_;
};

}  // namespace devid
