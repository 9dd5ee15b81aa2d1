#include "builder/image_source.h"

#include "base/files.h"
#include "base/size.h"
#include "formats/ext4/ext4_image.h"
#include "formats/image/image_manifest.h"

namespace kiln {

namespace fs = std::filesystem;

bool is_image_directory(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(path / "manifest.json", ec);
}

Result<ImageRootFilesystem> image_root_filesystem(const fs::path& dir) {
  const fs::path manifest_file = dir / "manifest.json";
  KILN_ASSIGN(std::string text, read_file(manifest_file));
  KILN_ASSIGN(ImageManifest m, read_image_manifest(text, manifest_file.string()));
  if (m.encryption)
    return fail(ErrorKind::kBadInput, "{}: its root is encrypted ({}); a bake starts only from a plain root",
                dir.string(), m.encryption->type);
  if (m.layout == "lvm")
    return fail(ErrorKind::kBadInput, "{}: its root is on LVM; a bake starts only from a root in root.img or a "
                                      "partition of disk.raw",
                dir.string());
  ImageRootFilesystem root{dir / "root.img", 0, m.architecture};
  if (m.find("root.img") && fs::exists(root.file)) return root;
  std::optional<int> number = m.root_partition();
  if (m.find("disk.raw") && number) {
    for (const ManifestPartition& p : m.partitions)
      if (p.number == *number) return ImageRootFilesystem{dir / "disk.raw", p.offset, m.architecture};
  }
  return fail(ErrorKind::kBadInput, "{}: neither a root.img nor a root partition of disk.raw in its manifest",
              dir.string());
}

Result<> export_image_root(const ImageRootFilesystem& root, const fs::path& out, Reporter& reporter) {
  KILN_ASSIGN(Ext4Image image, Ext4Image::open(root.file, root.offset, false));
  reporter.step("export", fmt::format("the root filesystem of {}", root.file.parent_path().string()));
  KILN_ASSIGN(ExportStats stats, image.export_archive(out, [&](uint64_t done, uint64_t total) {
                reporter.progress(done, total);
              }));
  reporter.done(fmt::format("{} entries, {}", stats.entries, format_size(stats.data_bytes)));
  return {};
}

}  // namespace kiln
