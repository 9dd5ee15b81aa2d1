// Secret: key material in memory (a passphrase, a key file's bytes, a
// volume key). It lives in one buffer that is locked out of swap where the
// system allows, never copied implicitly, and wiped when the Secret goes.
// Errors about a secret name its file, never its content.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>

#include "base/error.h"

namespace kiln {

class Secret {
 public:
  Secret() = default;
  // A secret of `size` bytes, zeroed.
  explicit Secret(size_t size);
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret();

  // `size` bytes from the system's cryptographic random generator.
  static Result<Secret> random(size_t size);
  // The first line of a file, without its line end: a passphrase as a
  // person types it at a prompt.
  static Result<Secret> passphrase_file(const std::filesystem::path& path);
  // A whole file, byte for byte, as cryptsetup's --key-file reads it.
  static Result<Secret> key_file(const std::filesystem::path& path);
  // A copy of `bytes` (tests, and secrets made by a library).
  static Secret from(std::string_view bytes);

  char* data() { return data_; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_, size_}; }
  bool operator==(const Secret& other) const;

 private:
  void release();
  char* data_ = nullptr;
  size_t size_ = 0;
  bool locked_ = false;
};

}  // namespace kiln
