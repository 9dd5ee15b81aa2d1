#include "formats/disk/qcow2_overlay.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "base/files.h"

namespace kiln {
namespace {

// The on-disk format is QEMU's docs/interop/qcow2.txt, version 3.
constexpr uint32_t kClusterBits = 16;
constexpr uint64_t kClusterSize = uint64_t{1} << kClusterBits;
constexpr uint32_t kHeaderLength = 104;
constexpr uint32_t kBackingFormatExtension = 0xE2792ACA;

// Cluster layout: header, refcount table, refcount block, L1 table.
constexpr uint64_t kRefcountTable = 1 * kClusterSize;
constexpr uint64_t kRefcountBlock = 2 * kClusterSize;
constexpr uint64_t kL1Table = 3 * kClusterSize;
constexpr uint64_t kClusters = 4;

void put32(std::string& out, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>(value >> (24 - 8 * i));
}

void put64(std::string& out, size_t at, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[at + i] = static_cast<char>(value >> (56 - 8 * i));
}

}  // namespace

Result<> create_qcow2_overlay(const std::filesystem::path& overlay, const std::filesystem::path& backing,
                              uint64_t virtual_size, std::string_view backing_format) {
  std::string name = backing.string();
  if (backing_format != "raw" && backing_format != "qcow2")
    return fail(ErrorKind::kBadInput, "{}: backing format '{}': expected raw or qcow2", name, backing_format);
  virtual_size = (virtual_size + 511) / 512 * 512;  // qcow2 counts whole sectors
  // Extensions: the backing format (8 + 8 padded), then the end marker.
  constexpr size_t kExtensions = 8 + 8 + 8;
  size_t backing_offset = kHeaderLength + kExtensions;
  if (!backing.is_absolute() || name.size() > 1023 || backing_offset + name.size() > kClusterSize)
    return fail(ErrorKind::kBadInput, "{}: the backing file must be an absolute path of at most 1023 bytes", name);
  // Each L1 entry maps one L2 table, which maps cluster_size / 8 clusters.
  uint64_t per_l1 = kClusterSize * (kClusterSize / 8);
  uint64_t l1_size = (virtual_size + per_l1 - 1) / per_l1;
  if (l1_size * 8 > kClusterSize) return fail(ErrorKind::kBadInput, "{}: too large for an overlay", name);

  std::string image(kClusters * kClusterSize, '\0');
  put32(image, 0, 0x514649fb);  // "QFI\xfb"
  put32(image, 4, 3);
  put64(image, 8, backing_offset);
  put32(image, 16, static_cast<uint32_t>(name.size()));
  put32(image, 20, kClusterBits);
  put64(image, 24, virtual_size);
  put32(image, 32, 0);  // no encryption
  put32(image, 36, static_cast<uint32_t>(l1_size));
  put64(image, 40, kL1Table);
  put64(image, 48, kRefcountTable);
  put32(image, 56, 1);   // refcount table clusters
  put32(image, 96, 4);   // refcount order: 16-bit refcounts
  put32(image, 100, kHeaderLength);
  put32(image, kHeaderLength, kBackingFormatExtension);
  put32(image, kHeaderLength + 4, static_cast<uint32_t>(backing_format.size()));
  image.replace(kHeaderLength + 8, backing_format.size(), backing_format);
  // The end-of-extensions marker is the zeros that follow.
  image.replace(backing_offset, name.size(), name);
  put64(image, kRefcountTable, kRefcountBlock);
  for (uint64_t cluster = 0; cluster < kClusters; ++cluster) {
    image[kRefcountBlock + 2 * cluster] = 0;
    image[kRefcountBlock + 2 * cluster + 1] = 1;
  }
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(overlay, 0600));
  KILN_TRY(file.write(image));
  return file.commit();
}

}  // namespace kiln

namespace kiln {

Result<uint64_t> qcow2_virtual_size(const std::filesystem::path& image) {
  KILN_ASSIGN(UniqueFd fd, open_file(image, O_RDONLY));
  unsigned char header[32];
  ssize_t got = ::pread(fd.get(), header, sizeof header, 0);
  if (got != static_cast<ssize_t>(sizeof header) || header[0] != 'Q' || header[1] != 'F' || header[2] != 'I' ||
      header[3] != 0xfb)
    return fail(ErrorKind::kBadInput, "{}: not a qcow2 image (no QFI header)", image.string());
  uint64_t size = 0;
  for (int i = 24; i < 32; ++i) size = size << 8 | header[i];
  return size;
}

}  // namespace kiln
