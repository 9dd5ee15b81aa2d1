// RootfsTree: moves a root filesystem between an archive and a directory
// tree, for the one stage that must run programs inside the image (apt-get,
// locale-gen, `run` commands) and for debootstrap, which only writes trees.
// Everything else in kiln streams archives without unpacking them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln {

// Unpacks any archive TarReader reads into `dir` (which must exist and be
// empty), keeping owners, modes, times, device nodes, hardlinks, holes and
// xattrs. Paths are never written outside `dir`.
Result<> extract_to_tree(const std::filesystem::path& archive, const std::filesystem::path& dir);

// Unpacks an archive that carries files rather than a system tree (a
// jailtime-style bundle: disk images and a config) into `dir` (which must
// exist and be empty): regular files and the directories they are in, and
// nothing else. A symlink, hard link or device node is refused by name, as
// is a name that appears twice; paths are never written outside `dir`.
// Owners, modes and times are not kept (files are 0644 less the umask,
// directories 0700); 4 KiB blocks of zeros are left as holes, so that a
// disk image stored whole stays sparse.
// Returns the files' paths relative to `dir`, in archive order.
// `progress`, when given, gets the bytes of the archive read and its size.
Result<std::vector<std::string>> extract_regular_files(
    const std::filesystem::path& archive, const std::filesystem::path& dir,
    const std::function<void(uint64_t, uint64_t)>& progress = {});

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
