// SectorCipher: dm-crypt's data encryption done in userspace with OpenSSL,
// so an image can be encrypted while it is written, with no device-mapper.
// Each sector is encrypted on its own with an IV from its sector number,
// exactly as the kernel does for LUKS1, LUKS2 and plain dm-crypt:
//  - plain64: the sector number, little-endian, zero-padded to the block;
//  - plain:   the same, truncated to 32 bits;
//  - essiv:sha256: the sector number encrypted with sha256(key) as the key.
// The sector number counts 512-byte units from the start of the encrypted
// area even when sectors are 4096 bytes (LUKS2 does not set dm-crypt's
// iv_large_sectors), unless the cipher is created with large-sector IVs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "crypto/secret.h"

namespace kiln {

// "aes-xts-plain64" split as cryptsetup does: cipher "aes", mode "xts-plain64".
struct CipherSpec {
  std::string cipher;  // "aes"
  std::string chain;   // "xts"
  std::string iv;      // "plain64", "essiv:sha256"; "" for none
  static Result<CipherSpec> parse(std::string_view text);
  std::string mode() const { return iv.empty() ? chain : chain + "-" + iv; }
  std::string to_string() const { return cipher + "-" + mode(); }
};

class SectorCipher {
 public:
  // Whether kiln encrypts this cipher itself (else libcryptsetup's
  // reencryption has to).
  static bool supports(std::string_view spec);
  // `key` is the volume key (both halves for xts); `sector_size` is 512 or
  // 4096.
  static Result<SectorCipher> create(std::string_view spec, const Secret& key, uint32_t sector_size,
                                     bool large_sector_ivs = false);
  SectorCipher(SectorCipher&&) noexcept;
  SectorCipher& operator=(SectorCipher&&) noexcept;
  ~SectorCipher();

  uint32_t sector_size() const;
  // Encrypts or decrypts whole sectors in place. `offset` is where `data`
  // starts in the encrypted area, in bytes; it and `size` are multiples of
  // the sector size.
  Result<> encrypt(char* data, size_t size, uint64_t offset);
  Result<> decrypt(char* data, size_t size, uint64_t offset);

 private:
  struct State;
  explicit SectorCipher(std::unique_ptr<State> state);
  Result<> run(char* data, size_t size, uint64_t offset, bool encrypt);
  std::unique_ptr<State> state_;
};

}  // namespace kiln
