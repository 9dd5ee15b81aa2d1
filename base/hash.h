// Hashes through OpenSSL's EVP interface: sha1 (kept for vmcast manifests),
// sha256 (content keys, manifests) and sha512 (virt-builder indexes).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

enum class HashAlgorithm { kSha1, kSha256, kSha512 };

class Hasher {
 public:
  explicit Hasher(HashAlgorithm algorithm = HashAlgorithm::kSha256);
  Hasher(Hasher&&) noexcept;
  ~Hasher();

  Hasher& update(std::string_view data);
  Hasher& update(const void* data, size_t size);
  // Length-prefixed field, so ("ab","c") and ("a","bc") hash differently.
  Hasher& field(std::string_view data);
  std::string hex_digest();
  std::string raw_digest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string sha256_hex(std::string_view data);
Result<std::string> file_digest_hex(const std::filesystem::path& path,
                                    HashAlgorithm algorithm = HashAlgorithm::kSha256);

// Copies [src_offset, src_offset + length) of src to the start of dst (which
// must read as zeros there: a fresh file) and returns the copy's sha256, in
// one pass: holes stay holes and are hashed without being read.
Result<std::string> copy_sparse_digest(int src_fd, uint64_t src_offset, int dst_fd, uint64_t length,
                                       std::string_view what);

std::string to_hex(std::string_view bytes);

// 64 hex digits, of either case: how a sha256 is written down.
bool is_sha256_hex(std::string_view text);

}  // namespace kiln
