#include "feeds/baked_image.h"

#include <sys/stat.h>

#include "base/files.h"
#include "feeds/xvm_xml.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

std::string string_at(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

const BakedArtifact* BakedImage::find(std::string_view file) const {
  for (const BakedArtifact& artifact : artifacts)
    if (artifact.file == file) return &artifact;
  return nullptr;
}

Result<BakedImage> parse_bake_manifest(std::string_view text, const std::string& source) {
  BakedImage image;
  image.manifest = nlohmann::json::parse(text, nullptr, false);
  const nlohmann::json& m = image.manifest;
  if (m.is_discarded() || !m.is_object())
    return fail(ErrorKind::kBadInput, "{}: not a JSON object", source);
  auto bad = [&](std::string_view what) {
    return fail(ErrorKind::kBadInput, "{}: {}; is this a kiln bake output?", source, what);
  };
  if (!m.contains("image") || !m["image"].is_object()) return bad("no \"image\" object");
  const nlohmann::json& info = m["image"];
  image.name = string_at(info, "name");
  image.version = string_at(info, "version");
  image.description = string_at(info, "description");
  image.layout = string_at(info, "layout");
  image.kernel = string_at(info, "kernel");
  if (image.name.empty()) return bad("image.name is missing");
  if (image.version.empty()) return bad("image.version is missing");
  if (!is_safe_member_name(image.name) || image.name.find('/') != std::string::npos)
    return bad(fmt::format("image.name '{}' is not a plain name", image.name));
  if (!is_safe_member_name(image.version) || image.version.find('/') != std::string::npos)
    return bad(fmt::format("image.version '{}' is not a plain version", image.version));
  if (auto build = m.find("build"); build != m.end() && build->is_object()) {
    auto ts = build->find("timestamp");
    if (ts != build->end() && ts->is_number_integer()) image.build_timestamp = ts->get<int64_t>();
  }
  if (auto parts = info.find("partitions"); parts != info.end() && parts->is_array()) {
    for (const auto& partition : *parts)
      if (partition.is_object() && string_at(partition, "name") == "root" && partition.contains("number") &&
          partition["number"].is_number_integer())
        image.root_partition = partition["number"].get<int>();
  }
  if (auto packages = m.find("packages"); packages != m.end() && packages->is_array()) {
    image.package_count = packages->size();
    for (const auto& package : *packages) {
      if (!package.is_object()) continue;
      std::string arch = string_at(package, "architecture");
      if (image.dpkg_architecture.empty() && !arch.empty() && arch != "all") image.dpkg_architecture = arch;
      if (string_at(package, "name") == "base-files") image.base_files_version = string_at(package, "version");
    }
  }
  auto artifacts = m.find("artifacts");
  if (artifacts == m.end() || !artifacts->is_array()) return bad("no \"artifacts\" list");
  for (const auto& entry : *artifacts) {
    BakedArtifact artifact;
    if (!entry.is_object() || !entry.contains("size") || !entry["size"].is_number_unsigned())
      return bad("an artifact has no size");
    artifact.file = string_at(entry, "file");
    artifact.sha256 = string_at(entry, "sha256");
    artifact.size = entry["size"].get<uint64_t>();
    if (artifact.file.empty() || artifact.file.find('/') != std::string::npos ||
        !is_safe_member_name(artifact.file) || artifact.file == "manifest.json")
      return bad(fmt::format("artifact '{}' is not a plain file name", artifact.file));
    if (artifact.sha256.size() != 64) return bad(fmt::format("artifact '{}' has no sha256", artifact.file));
    if (image.find(artifact.file)) return bad(fmt::format("artifact '{}' is listed twice", artifact.file));
    image.artifacts.push_back(std::move(artifact));
  }
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
  for (const BakedArtifact& artifact : image.artifacts) {
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
