#include "builder/root_stack.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "base/files.h"
#include "base/size.h"
#include "crypto/luks.h"
#include "crypto/sector_cipher.h"
#include "crypto/volume_encryption.h"
#include "formats/ext4/ext4_allocation.h"
#include "formats/disk/swap_area.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

LuksSettings luks_settings(const Plan& plan) {
  const LuksSection& luks = plan.recipe->storage.luks;
  LuksSettings settings;
  settings.version = luks.version.value;
  settings.cipher = luks.cipher.value;
  settings.key_bytes = static_cast<uint32_t>(luks.key_size.value / 8);
  settings.sector_size = static_cast<uint32_t>(luks.sector_size.value);
  settings.hash = luks.hash.value;
  settings.pbkdf.type = luks.pbkdf.value;
  settings.pbkdf.hash = luks.hash.value;
  settings.pbkdf.time_ms = static_cast<uint32_t>(luks.pbkdf_time.value);
  settings.pbkdf.iterations = static_cast<uint32_t>(luks.pbkdf_iterations.value);
  settings.pbkdf.memory_kib = static_cast<uint32_t>(luks.pbkdf_memory.value / 1024);
  settings.label = luks.label.value;
  settings.uuid = plan.identity.luks.to_string();
  return settings;
}

// The secrets of [storage.luks], keyslot 0 first. Errors name the recipe line.
Result<std::vector<Secret>> luks_keys(const LuksSection& luks) {
  std::vector<Secret> keys;
  for (const auto& [file, whole] : {std::pair{&luks.passphrase_file, false}, std::pair{&luks.key_file, true}}) {
    if (file->value.empty()) continue;
    auto key = whole ? Secret::key_file(file->value) : Secret::passphrase_file(file->value);
    if (!key) {
      Error error = std::move(key).error();
      error.where = file->where;
      return std::unexpected(std::move(error));
    }
    keys.push_back(std::move(*key));
  }
  return keys;
}

// Encrypted in place, the blocks not in use may still hold plaintext that
// was written and then freed (a file a customisation replaced): they become
// holes, as they would be on a freshly formatted LUKS disk.
Result<> clear_unused(const fs::path& image, uint64_t start, uint64_t length, const std::vector<ByteRange>& used) {
  KILN_ASSIGN(UniqueFd fd, open_file(image, O_RDWR | O_CLOEXEC));
  auto clear = [&](uint64_t from, uint64_t to) -> Result<> {
    if (to <= from) return {};
    if (::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(start + from),
                    static_cast<off_t>(to - from)) == 0)
      return {};
    static const std::string zeros(1 << 20, '\0');
    for (uint64_t at = from; at < to; at += zeros.size())
      KILN_TRY(pwrite_all(fd.get(), zeros.data(), std::min<uint64_t>(zeros.size(), to - at), start + at, image.string()));
    return {};
  };
  uint64_t cursor = 0;
  for (const ByteRange& range : used) {
    KILN_TRY(clear(cursor, range.offset));
    cursor = std::max(cursor, range.offset + range.length);
  }
  return clear(cursor, length);
}

std::string cipher_of(const StorageSection& storage) {
  return storage.luks.present.value ? storage.luks.cipher.value : storage.dmcrypt.cipher.value;
}

}  // namespace

Result<RootStack> RootStack::create(const Plan& plan, const fs::path& image, uint64_t offset, uint64_t size,
                                            const fs::path& scratch, Reporter& reporter) {
  RootStack stack(plan, image, offset, size);
  const StorageSection& storage = plan.recipe->storage;
  if (storage.luks.present.value || storage.dmcrypt.present.value) stack.header_size_ = plan.disk.header_size;
  if (stack.encrypted()) {
    stack.scratch_ = scratch;
    if (SectorCipher::supports(cipher_of(storage))) {
      stack.plaintext_file_ = image;
      stack.plaintext_offset_ = offset + stack.header_size_;
    } else {
      stack.staging_ = scratch / ".root-plaintext";
      KILN_ASSIGN(UniqueFd staged, open_file(stack.staging_, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (::ftruncate(staged.get(), static_cast<off_t>(size - stack.header_size_)) != 0)
        return fail_errno("cannot size", stack.staging_.string(), errno);
      stack.plaintext_file_ = stack.staging_;
      stack.plaintext_offset_ = 0;
    }
  } else {
    stack.plaintext_file_ = image;
    stack.plaintext_offset_ = offset;
  }
  KILN_TRY(stack.place_volumes(reporter));
  if (storage.luks.present.value) KILN_TRY(stack.start_luks_header(reporter));
  return stack;
}

Result<> RootStack::start_luks_header(Reporter& reporter) {
  LuksSettings settings = luks_settings(*plan_);
  KILN_ASSIGN(std::vector<Secret> keys, luks_keys(plan_->recipe->storage.luks));
  KILN_ASSIGN(Secret volume_key, Secret::random(settings.key_bytes));
  reporter.note(fmt::format("{} header ({} key derivation, beside the filesystems)", settings.version,
                            settings.pbkdf.type));
  // libcryptsetup formats whole files: a sparse one of the partition's
  // size, whose header part seal() copies into place.
  header_file_ = scratch_ / ".root-luks-header";
  {
    KILN_ASSIGN(UniqueFd created, open_file(header_file_, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (::ftruncate(created.get(), static_cast<off_t>(size_)) != 0)
      return fail_errno("cannot size", header_file_.string(), errno);
  }
  luks_header_ = std::async(std::launch::async, [header = header_file_, settings, keys = std::move(keys),
                                                 volume_key = std::move(volume_key)]() mutable -> Result<LuksHeader> {
    std::vector<const Secret*> pointers;
    for (const Secret& key : keys) pointers.push_back(&key);
    KILN_ASSIGN(uint64_t data_offset, format_luks(header, settings, volume_key, pointers));
    return LuksHeader{std::move(volume_key), data_offset, static_cast<int>(keys.size())};
  });
  return {};
}

RootStack::RootStack(RootStack&& other) noexcept
    : plan_(other.plan_), image_(std::move(other.image_)), offset_(other.offset_), size_(other.size_),
      header_size_(other.header_size_), plaintext_file_(std::move(other.plaintext_file_)),
      plaintext_offset_(other.plaintext_offset_), scratch_(std::move(other.scratch_)),
      staging_(std::exchange(other.staging_, {})),
      volumes_(std::move(other.volumes_)), lvm_(std::move(other.lvm_)),
      header_file_(std::exchange(other.header_file_, {})), luks_header_(std::move(other.luks_header_)) {}

RootStack::~RootStack() {
  std::error_code ignored;
  if (luks_header_.valid()) luks_header_.wait();
  if (!header_file_.empty()) fs::remove(header_file_, ignored);
  if (!staging_.empty()) fs::remove(staging_, ignored);
}

const PlacedVolume& RootStack::root() const {
  for (const PlacedVolume& volume : volumes_)
    if (volume.is_root()) return volume;
  return volumes_.front();
}

Result<> RootStack::place_volumes(Reporter& reporter) {
  const Plan& plan = *plan_;
  const StorageSection& storage = plan.recipe->storage;
  const uint64_t area = plan.disk.plaintext_size;
  if (storage.layout.value != StorageLayout::kLvm) {
    volumes_.push_back({"root", storage.filesystem.value, "/", storage.label.value, plan.identity.root_filesystem, 0,
                        area});
    return {};
  }
  reporter.note(fmt::format("LVM: volume group {} with {} volumes (lvm2 on a loop device)", storage.lvm.vg.value,
                            storage.lvm.volumes.size()));
  std::vector<LogicalVolumeRequest> requests;
  for (const LvmVolume& volume : storage.lvm.volumes)
    requests.push_back({volume.name.value, volume.rest ? 0 : volume.size.value});
  auto layout = write_lvm_layout(plaintext_file_, plaintext_offset_, area, storage.lvm.vg.value,
                                 storage.lvm.extent_size.value, requests);
  if (!layout) {
    Error error = std::move(layout).error();
    if (error.where.empty()) error.where = storage.lvm.present.where;
    return std::unexpected(std::move(error).with_context("storage.lvm"));
  }
  for (size_t i = 0; i < storage.lvm.volumes.size(); ++i) {
    const LvmVolume& volume = storage.lvm.volumes[i];
    const PlacedLogicalVolume& placed = layout->volumes[i];
    volumes_.push_back({volume.name.value, volume.filesystem.value, volume.mountpoint.value, volume.label.value,
                        plan.identity.volumes.at(volume.name.value), placed.offset, placed.size});
  }
  lvm_ = std::move(*layout);
  return {};
}

Result<std::optional<EncryptionInfo>> RootStack::seal(Reporter& reporter) {
  if (!encrypted()) return std::nullopt;
  const Plan& plan = *plan_;
  const StorageSection& storage = plan.recipe->storage;

  // What holds anything: the LVM label and metadata, each filesystem's
  // blocks in use, each swap header.
  std::vector<ByteRange> ranges;
  if (lvm_) ranges.push_back({0, lvm_->pe_start});
  for (const PlacedVolume& volume : volumes_) {
    if (volume.filesystem == FilesystemType::kSwap) {
      ranges.push_back({volume.offset, kSwapHeaderSize});
      continue;
    }
    KILN_ASSIGN(std::vector<ByteRange> used, ext4_used_ranges(plaintext_file_, plaintext_offset_ + volume.offset));
    for (const ByteRange& range : used) ranges.push_back({volume.offset + range.offset, range.length});
  }

  EncryptionInfo info;
  Secret volume_key;
  if (storage.luks.present.value) {
    LuksSettings settings = luks_settings(plan);
    if (!luks_header_.valid()) return fail(ErrorKind::kFailed, "internal: the LUKS header was never started");
    KILN_ASSIGN(LuksHeader made, luks_header_.get());
    volume_key = std::move(made.volume_key);
    const uint64_t data_offset = made.data_offset;
    if (data_offset != header_size_)
      return fail(ErrorKind::kFailed, "libcryptsetup placed the data at {} bytes, not at {} as planned", data_offset,
                  header_size_);
    {
      KILN_ASSIGN(UniqueFd source, open_file(header_file_, O_RDONLY | O_CLOEXEC));
      KILN_ASSIGN(UniqueFd target, open_file(image_, O_RDWR | O_CLOEXEC));
      KILN_TRY(copy_sparse(source.get(), 0, target.get(), offset_, data_offset, image_.string()));
    }
    std::error_code ignored;
    fs::remove(std::exchange(header_file_, {}), ignored);
    info = {settings.version, settings.cipher, settings.key_bytes * 8, settings.sector_size, data_offset,
            settings.uuid, made.keyslots, 0, ""};
  } else {
    const DmcryptSection& dmcrypt = storage.dmcrypt;
    auto passphrase = Secret::passphrase_file(dmcrypt.passphrase_file.value);
    if (!passphrase) {
      Error error = std::move(passphrase).error();
      error.where = dmcrypt.passphrase_file.where;
      return std::unexpected(std::move(error));
    }
    KILN_ASSIGN(volume_key, plain_dmcrypt_key(dmcrypt.cipher.value, static_cast<uint32_t>(dmcrypt.key_size.value / 8),
                                              dmcrypt.hash.value, *passphrase));
    info = {"plain", dmcrypt.cipher.value, static_cast<uint32_t>(dmcrypt.key_size.value),
            static_cast<uint32_t>(dmcrypt.sector_size.value), 0, "", 0, 0, ""};
  }

  merge_ranges(ranges, info.sector_size);
  if (SectorCipher::supports(info.cipher)) {
    reporter.note(fmt::format("encrypting {} in use with {}", format_size([&] {
                                uint64_t sum = 0;
                                for (const ByteRange& range : ranges) sum += range.length;
                                return sum;
                              }()),
                              info.cipher));
    EncryptionJob job{plaintext_file_, plaintext_offset_, image_, offset_ + info.data_offset, info.cipher,
                      info.sector_size,
                      [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); }};
    KILN_ASSIGN(info.encrypted_bytes, encrypt_ranges(job, ranges, volume_key));
    if (plaintext_file_ == image_) KILN_TRY(clear_unused(image_, plaintext_offset_, size_ - header_size_, ranges));
    info.method = "kiln";
  } else {
    // A cipher kiln does not implement (LUKS2 only, as the recipe checks):
    // libcryptsetup encrypts the whole staging file, which then goes in.
    reporter.note(fmt::format("encrypting with {} through libcryptsetup's reencryption", info.cipher));
    KILN_TRY(encrypt_with_libcryptsetup(staging_, luks_settings(plan), volume_key,
                                        [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); }));
    KILN_ASSIGN(UniqueFd source, open_file(staging_, O_RDONLY | O_CLOEXEC));
    KILN_ASSIGN(UniqueFd target, open_file(image_, O_RDWR | O_CLOEXEC));
    uint64_t length = size_ - info.data_offset;
    KILN_TRY(copy_sparse(source.get(), 0, target.get(), offset_ + info.data_offset, length, image_.string()));
    info.encrypted_bytes = length;
    info.method = "libcryptsetup reencryption";
  }
  return info;
}

}  // namespace kiln
