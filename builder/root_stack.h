// RootStack: the layers that hold the root filesystem: the root partition
// of disk.raw (or all of root.img) as the storage layout makes it, and the
// volumes inside it. (Not to be confused with the Xen-era domain containers
// of container/.)
//
//   layout gpt/plain: one root filesystem;
//   layout lvm:       an LVM physical volume holding the recipe's logical
//                     volumes (metadata by lvm2's tools: the one loop device
//                     of a bake, see formats/disk/lvm_layout.h);
//   [storage.luks] / [storage.dmcrypt]: the above, encrypted.
//
// Filesystems are written into the stack's plaintext area. Unencrypted,
// that is the partition itself. Encrypted, it is the partition behind the
// header, where seal() then encrypts exactly the blocks in use (per each
// filesystem's block bitmap, the LVM metadata, swap headers) in place, in
// userspace, no device-mapper involved: the plaintext never leaves the
// unfinished output, and no byte is copied twice. Free blocks stay holes:
// they decrypt to noise, as on any fresh LUKS disk. A cipher only
// libcryptsetup knows gets a sparse staging file instead, which its
// reencryption encrypts whole.
#pragma once

#include <cstdint>
#include <future>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/plan.h"
#include "crypto/secret.h"
#include "base/uuid.h"
#include "formats/disk/lvm_layout.h"

namespace kiln {

// One filesystem or swap area of the image.
struct PlacedVolume {
  std::string name;        // "root", or the logical volume's name
  FilesystemType filesystem = FilesystemType::kExt4;
  std::string mountpoint;  // "" for swap
  std::string label;
  Uuid uuid;
  uint64_t offset = 0;  // in the plaintext area
  uint64_t size = 0;
  bool is_root() const { return mountpoint == "/"; }
};

// What the manifest says about the encryption (never a key).
struct EncryptionInfo {
  std::string type;  // "luks2", "luks1" or "plain"
  std::string cipher;
  uint32_t key_bits = 0;
  uint32_t sector_size = 0;
  uint64_t data_offset = 0;  // bytes of header before the encrypted data
  std::string uuid;          // LUKS only
  int keyslots = 0;
  uint64_t encrypted_bytes = 0;  // what was encrypted: the blocks in use
  std::string method;            // "kiln" (userspace) or "libcryptsetup reencryption"
};

class RootStack {
 public:
  // [offset, offset + size) of `image` is the stack. `scratch` is a
  // directory on the output's filesystem for the header and staging files.
  static Result<RootStack> create(const Plan& plan, const std::filesystem::path& image, uint64_t offset,
                                      uint64_t size, const std::filesystem::path& scratch, Reporter& reporter);
  RootStack(RootStack&& other) noexcept;
  RootStack& operator=(RootStack&&) = delete;
  ~RootStack();

  // The file and offset where the plaintext area begins: filesystems go to
  // plaintext_offset() + volume.offset of plaintext_file().
  const std::filesystem::path& plaintext_file() const { return plaintext_file_; }
  uint64_t plaintext_offset() const { return plaintext_offset_; }
  const std::vector<PlacedVolume>& volumes() const { return volumes_; }
  const PlacedVolume& root() const;
  const std::optional<LvmLayout>& lvm() const { return lvm_; }
  bool encrypted() const { return header_size_ != kNotEncrypted; }

  // Encrypts the volumes' blocks into the image and writes the header; a
  // no-op for an unencrypted stack. Call once every volume is closed.
  Result<std::optional<EncryptionInfo>> seal(Reporter& reporter);

 private:
  static constexpr uint64_t kNotEncrypted = ~uint64_t{0};
  RootStack(const Plan& plan, std::filesystem::path image, uint64_t offset, uint64_t size)
      : plan_(&plan), image_(std::move(image)), offset_(offset), size_(size) {}
  Result<> place_volumes(Reporter& reporter);
  Result<> start_luks_header(Reporter& reporter);

  const Plan* plan_;
  std::filesystem::path image_;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
  uint64_t header_size_ = kNotEncrypted;
  std::filesystem::path plaintext_file_;
  uint64_t plaintext_offset_ = 0;
  std::filesystem::path scratch_;
  std::filesystem::path staging_;  // owned and removed: libcryptsetup's plaintext
  std::vector<PlacedVolume> volumes_;
  std::optional<LvmLayout> lvm_;
  // The LUKS header depends on nothing the filesystems hold, and its key
  // derivation is the costliest part of encrypting: libcryptsetup makes it
  // in header_file_ on another thread while they are written, and seal()
  // puts it in place.
  struct LuksHeader {
    Secret volume_key;
    uint64_t data_offset = 0;
    int keyslots = 0;
  };
  std::filesystem::path header_file_;  // owned and removed
  std::future<Result<LuksHeader>> luks_header_;
};

}  // namespace kiln
