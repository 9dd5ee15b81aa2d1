#include "base/uuid.h"

#include <algorithm>

#include <fmt/format.h>

#include <openssl/rand.h>

#include "base/hash.h"

namespace kiln {
namespace {

// kiln's UUID namespace: a version-5 UUID of "kiln" in the URL namespace.
constexpr std::array<uint8_t, 16> kKilnNamespace = {0x2a, 0x9f, 0x5e, 0x61, 0x0b, 0x8d,
                                                    0x5c, 0x3a, 0x9e, 0x41, 0x6c, 0x0d,
                                                    0x7f, 0x12, 0xb3, 0x58};

}  // namespace

std::string Uuid::to_string() const {
  std::string hex = to_hex(std::string_view(reinterpret_cast<const char*>(bytes.data()), 16));
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20));
}

Uuid Uuid::from_name(std::string_view name) {
  std::string digest = Hasher(HashAlgorithm::kSha1)
                           .update(kKilnNamespace.data(), kKilnNamespace.size())
                           .update(name)
                           .raw_digest();
  Uuid uuid;
  std::copy_n(reinterpret_cast<const uint8_t*>(digest.data()), 16, uuid.bytes.begin());
  uuid.bytes[6] = (uuid.bytes[6] & 0x0f) | 0x50;
  uuid.bytes[8] = (uuid.bytes[8] & 0x3f) | 0x80;
  return uuid;
}

Uuid Uuid::random() {
  Uuid uuid;
  RAND_bytes(uuid.bytes.data(), static_cast<int>(uuid.bytes.size()));
  uuid.bytes[6] = (uuid.bytes[6] & 0x0f) | 0x40;
  uuid.bytes[8] = (uuid.bytes[8] & 0x3f) | 0x80;
  return uuid;
}

}  // namespace kiln
