#include "builder/luks_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/files.h"
#include "base/size.h"
#include "crypto/sector_cipher.h"
#include "crypto/volume_encryption.h"
#include "formats/ext4/ext4_allocation.h"

namespace kiln {

Result<EncryptionInfo> encrypt_image(const std::filesystem::path& plain, const std::filesystem::path& out,
                                     const LuksSettings& settings, std::span<const Secret* const> keys,
                                     Reporter& reporter) {
  if (!SectorCipher::supports(settings.cipher))
    return fail(ErrorKind::kBadInput, "cipher \"{}\": kiln luks encrypt takes the ciphers kiln encrypts itself "
                                      "(aes with xts or cbc, plain64, plain or essiv:sha256 IVs)",
                settings.cipher);
  if (keys.empty()) return fail(ErrorKind::kBadInput, "a LUKS volume needs at least one key");
  struct stat st;
  if (::stat(plain.c_str(), &st) != 0) return fail_errno("cannot open", plain.string(), errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0 || size % settings.sector_size != 0)
    return fail(ErrorKind::kBadInput, "{}: {} bytes is not a whole number of {}-byte encryption sectors",
                plain.string(), size, settings.sector_size);
  // An ext2/3/4 image: the blocks in use. Anything else: all of it.
  std::vector<ByteRange> ranges;
  auto used = ext4_used_ranges(plain, 0);
  if (used) {
    ranges = std::move(*used);
  } else if (used.error().kind == ErrorKind::kBadInput) {
    ranges.push_back({0, size});
  } else {
    return std::unexpected(std::move(used).error());
  }
  merge_ranges(ranges, settings.sector_size);

  uint64_t header = luks_header_size(settings.version);
  KILN_ASSIGN(AtomicFile target, AtomicFile::create(out, 0600));
  if (::ftruncate(target.fd(), static_cast<off_t>(header + size)) != 0)
    return fail_errno("cannot size", target.temp_path().string(), errno);
  KILN_ASSIGN(Secret volume_key, Secret::random(settings.key_bytes));
  reporter.note(fmt::format("{} header ({} key derivation)", settings.version, settings.pbkdf.type));
  KILN_ASSIGN(uint64_t data_offset, format_luks(target.temp_path(), settings, volume_key, keys));
  if (data_offset != header)
    return fail(ErrorKind::kFailed, "libcryptsetup placed the data at {} bytes, not at {}", data_offset, header);
  EncryptionJob job{plain, 0, target.temp_path(), data_offset, settings.cipher, settings.sector_size,
                    [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); }};
  KILN_ASSIGN(uint64_t encrypted, encrypt_ranges(job, ranges, volume_key));
  KILN_TRY(target.commit());
  return EncryptionInfo{settings.version, settings.cipher, settings.key_bytes * 8, settings.sector_size, data_offset,
                        settings.uuid, static_cast<int>(keys.size()), encrypted, "kiln"};
}

}  // namespace kiln
