// VolumeEncryption: the data of a dm-crypt volume (LUKS or plain) written
// from a plaintext file in userspace, or read back into one: the given
// ranges only, each sector with its IV, in pieces spread over a few threads. A range of the plaintext
// that is a hole is encrypted as zeros, like any other data. The plaintext
// may be the target itself, at the same offset: each piece is then read
// before its ciphertext replaces it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "base/byte_range.h"
#include "base/error.h"
#include "crypto/secret.h"

namespace kiln {

struct EncryptionJob {
  std::filesystem::path plaintext;
  uint64_t plaintext_offset = 0;  // where the volume's data starts in it
  std::filesystem::path target;
  uint64_t target_offset = 0;  // where the encrypted data starts in it (after any header)
  std::string cipher;          // "aes-xts-plain64"
  uint32_t sector_size = 512;
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Encrypts `ranges` (offsets from the volume's start, whole sectors, sorted)
// and returns the bytes encrypted.
Result<uint64_t> encrypt_ranges(const EncryptionJob& job, std::span<const ByteRange> ranges, const Secret& key);

// The other way: decrypts `ranges` of `target` into `plaintext`, which must
// be a fresh file of the volume's size (sectors that decrypt to zeros are
// left as its holes). Returns the bytes decrypted.
Result<uint64_t> decrypt_ranges(const EncryptionJob& job, std::span<const ByteRange> ranges, const Secret& key);

// Widens each range to whole `sector`-byte sectors (a filesystem's blocks
// may be smaller than the volume's sectors), then sorts and merges
// overlapping or touching ranges.
void merge_ranges(std::vector<ByteRange>& ranges, uint64_t sector = 1);

}  // namespace kiln
