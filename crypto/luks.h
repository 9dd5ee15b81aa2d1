// LUKS and plain dm-crypt through libcryptsetup, on image files, with no
// device-mapper: headers are formatted into a file, keyslots are added,
// changed and removed in a private copy of the header that is written back
// into the image only when the operation succeeded, and plain dm-crypt keys
// are derived the way `cryptsetup create` derives them. libcryptsetup's
// metadata locking is off: kiln works on files it owns, and must not touch
// the host's /run/cryptsetup.
//
// Passphrases and keys travel as Secrets; no message here ever shows one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "crypto/secret.h"

namespace kiln {

struct PbkdfSettings {
  std::string type = "argon2id";  // "argon2id", "argon2i" or "pbkdf2"
  std::string hash = "sha256";    // pbkdf2's hash
  uint32_t time_ms = 2000;        // benchmarked to this, unless iterations is set
  uint32_t iterations = 0;        // fixed cost: pbkdf2 iterations or argon2 passes
  uint32_t memory_kib = 262144;   // argon2
};

struct LuksSettings {
  std::string version = "luks2";  // "luks2" or "luks1"
  std::string cipher = "aes-xts-plain64";
  uint32_t key_bytes = 64;
  uint32_t sector_size = 4096;
  std::string hash = "sha256";  // header digest and anti-forensic splitter
  PbkdfSettings pbkdf;
  std::string label;  // luks2 only
  std::string uuid;
};

// The bytes in front of the encrypted data that a header of this version
// ("luks2", "luks1") takes (16 MiB, 2 MiB), without formatting anything.
uint64_t luks_header_size(std::string_view version);

// Formats a LUKS header at the start of `device`, a file as large as the
// whole LUKS volume, for `volume_key`, with one keyslot per key in order
// (keyslot 0 from the first). Returns the data offset in bytes: the header
// is [0, offset) of the file; nothing after it is touched.
Result<uint64_t> format_luks(const std::filesystem::path& device, const LuksSettings& settings,
                             const Secret& volume_key, std::span<const Secret* const> keys);

// Encrypts `data` in place (all of it) with `volume_key` through
// libcryptsetup's LUKS2 reencryption, for ciphers SectorCipher does not
// implement. The data is then what a LUKS2 volume of `settings` and
// `volume_key` holds after its header.
Result<> encrypt_with_libcryptsetup(const std::filesystem::path& data, const LuksSettings& settings,
                                    const Secret& volume_key,
                                    const std::function<void(uint64_t done, uint64_t total)>& progress = {});

// The key plain dm-crypt uses for `passphrase`: `cryptsetup create --cipher
// CIPHER --key-size BITS --hash HASH` (the hash applied as cryptsetup does,
// repeated when the key is longer than the hash).
Result<Secret> plain_dmcrypt_key(std::string_view cipher, uint32_t key_bytes, std::string_view hash,
                                 const Secret& passphrase);

// A LUKS volume inside an image file: [offset, offset + size) of `image`.
struct LuksRegion {
  std::filesystem::path image;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string description;  // "disk.raw partition 2", for messages
};

// Whether `image` holds a LUKS header at `offset`.
Result<bool> has_luks_header(const std::filesystem::path& image, uint64_t offset);

struct KeyslotState {
  int slot = 0;
  bool active = false;
};

// What `cryptsetup luksDump` prints for the header.
Result<std::string> luks_dump(const LuksRegion& region);
Result<std::vector<KeyslotState>> luks_keyslots(const LuksRegion& region);

// What a passphrase opens: the volume key and how the data after the header
// is encrypted, for reading (and writing back) the volume in userspace.
struct UnlockedLuks {
  Secret volume_key;
  std::string version;  // "luks2", "luks1"
  std::string cipher;   // "aes-xts-plain64"
  uint32_t sector_size = 512;
  uint64_t data_offset = 0;  // bytes from the header's start
  std::string uuid;
  int keyslot = 0;  // the one the passphrase opened
  int active_keyslots = 0;
};

// Opens `region` with `passphrase`, changing nothing; a passphrase that
// opens no keyslot is a clear error that never shows it.
Result<UnlockedLuks> luks_unlock(const LuksRegion& region, const Secret& passphrase);

// Adds a keyslot for `added`, unlocked by `existing`; returns its number. The
// new keyslot takes the key derivation settings of the one `existing` opens,
// unless `pbkdf` is given.
Result<int> luks_add_key(const LuksRegion& region, const Secret& existing, const Secret& added,
                         const std::optional<PbkdfSettings>& pbkdf = std::nullopt);
// Replaces the key of the keyslot `existing` opens with `replacement`;
// returns the keyslot.
Result<int> luks_change_key(const LuksRegion& region, const Secret& existing, const Secret& replacement);
// Removes a keyslot: the one given, or the one `key` opens. Removing the last
// active keyslot (which would lose the data for good) needs `force`.
Result<int> luks_remove_key(const LuksRegion& region, std::optional<int> slot, const Secret* key, bool force);

}  // namespace kiln
