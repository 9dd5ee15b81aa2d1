// RootfsTree: moves a root filesystem between an archive and a directory
// tree, for the one stage that must run programs inside the image (apt-get,
// locale-gen, `run` commands) and for debootstrap, which only writes trees.
// Everything else in kiln streams archives without unpacking them.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/error.h"

namespace kiln {

// Unpacks any archive TarReader reads into `dir` (which must exist and be
// empty), keeping owners, modes, times, device nodes, hardlinks, holes and
// xattrs. Paths are never written outside `dir`.
Result<> extract_to_tree(const std::filesystem::path& archive, const std::filesystem::path& dir);

// Packs `dir` into a pax tar at `out`: entries sorted by name, numeric owners
// only, times clamped to `clamp_mtime` (when non-zero), hardlinks as links,
// holes as sparse entries, xattrs kept. Equal trees give equal bytes.
Result<> write_tree_as_tar(const std::filesystem::path& dir, const std::filesystem::path& out,
                           int64_t clamp_mtime);

// The archive forms kiln writes. cpio newc is the domain-container and
// initramfs format; it has no sparse map, no xattrs and keeps hard links
// only as separate copies, so a tree packed as cpio comes back with the same
// names, contents, owners, modes and times but holes filled and links split.
enum class ArchiveFormat { kPaxTar, kCpioNewc };
enum class ArchiveCompression { kNone, kGzip, kXz, kZstd };

struct ArchiveForm {
  ArchiveFormat format = ArchiveFormat::kPaxTar;
  ArchiveCompression compression = ArchiveCompression::kNone;
  bool operator==(const ArchiveForm&) const = default;
};

// write_tree_as_tar in any of those forms; entries are named relative to
// `dir` ("./etc/passwd" for dir/etc/passwd).
Result<> write_tree_as_archive(const std::filesystem::path& dir, const std::filesystem::path& out,
                               ArchiveForm form, int64_t clamp_mtime);

// The form of an existing archive, to rewrite it the way it was. Tar
// variants (GNU, ustar, pax) all come back as pax, cpio variants as newc.
Result<ArchiveForm> archive_form_of(const std::filesystem::path& archive);

}  // namespace kiln
