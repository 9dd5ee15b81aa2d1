// ImageSource: bootstrap.from naming a kiln image directory (the output of
// `kiln bake` or `kiln import`) rather than a rootfs archive. The bake then
// starts from that image's root filesystem: read in place with libext2fs
// (no mount) and exported to the stage's rootfs.tar with everything a root
// holds (owners, xattrs, hard links, device nodes), so that a vendor's disk
// imported once can be customised by recipes like a bootstrapped one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/reporter.h"

namespace kiln {

// Where an image directory's root filesystem is: root.img, or the root
// partition of disk.raw.
struct ImageRootFilesystem {
  std::filesystem::path file;
  uint64_t offset = 0;
  std::string architecture;  // dpkg's name, from the manifest
};

// Whether `path` is an image directory (a directory with a manifest.json).
bool is_image_directory(const std::filesystem::path& path);

// Finds the root filesystem of the image directory `dir`. Refused, by
// name: an encrypted root and a root on LVM (whose plaintext or volume the
// export would have to open first), and an image with neither root.img nor
// a root partition.
Result<ImageRootFilesystem> image_root_filesystem(const std::filesystem::path& dir);

// Writes the root filesystem as a pax tar at `out`.
Result<> export_image_root(const ImageRootFilesystem& root, const std::filesystem::path& out, Reporter& reporter);

}  // namespace kiln
