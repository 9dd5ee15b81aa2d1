#include "feeds/baked_image.h"

#include <sys/stat.h>

#include "base/files.h"

namespace kiln {

namespace fs = std::filesystem;

Result<BakedImage> parse_bake_manifest(std::string_view text, const std::string& source) {
  BakedImage image;
  KILN_ASSIGN(image.manifest, read_image_manifest(text, source));
  const ImageManifest& m = image.manifest;
  image.name = m.name;
  image.version = m.version;
  image.description = m.description;
  image.layout = m.layout;
  image.kernel = m.kernel;
  image.build_timestamp = m.build_timestamp;
  image.root_partition = m.root_partition();
  image.package_count = m.packages.size();
  image.dpkg_architecture = m.architecture;
  for (const ManifestPackage& package : m.packages)
    if (package.name == "base-files") image.base_files_version = package.version;
  return image;
}

Result<BakedImage> read_baked_image(const fs::path& dir) {
  fs::path manifest_path = dir / "manifest.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return fail(ErrorKind::kBadInput, "{}: not a directory; give the output directory of `kiln bake`", dir.string());
  if (!fs::exists(manifest_path, ec))
    return fail(ErrorKind::kBadInput, "{}: no manifest.json; give the output directory of `kiln bake`", dir.string());
  KILN_ASSIGN(std::string text, read_file(manifest_path));
  KILN_ASSIGN(BakedImage image, parse_bake_manifest(text, manifest_path.string()));
  image.dir = dir;
  for (const BakedArtifact& artifact : image.manifest.artifacts) {
    fs::path path = dir / artifact.file;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return fail(ErrorKind::kBadInput, "{}: listed in manifest.json but missing; bake the image again",
                  path.string());
    if (!S_ISREG(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: not a regular file", path.string());
    if (static_cast<uint64_t>(st.st_size) != artifact.size)
      return fail(ErrorKind::kBadInput, "{}: {} bytes, but manifest.json says {}; the output changed after the bake",
                  path.string(), st.st_size, artifact.size);
  }
  return image;
}

}  // namespace kiln
