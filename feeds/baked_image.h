// BakedImage: a bake output directory as publish reads it (and as pull
// writes it back): manifest.json and the artifacts it lists, with what the
// feeds need to describe the image (name, version, layout, architecture,
// the root partition).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/image/image_manifest.h"

namespace kiln {

using BakedArtifact = ManifestArtifact;

// The manifest, and what the feeds describe an image by, taken from it.
struct BakedImage {
  std::filesystem::path dir;
  ImageManifest manifest;
  std::string name;
  std::string version;
  std::string description;
  std::string layout;  // "gpt", "plain", "lvm"
  std::string kernel;
  int64_t build_timestamp = 0;
  std::optional<int> root_partition;  // the GPT partition named "root"
  std::string dpkg_architecture;      // "amd64", from the manifest
  std::string base_files_version;     // Debian's release shows in it
  size_t package_count = 0;

  const BakedArtifact* find(std::string_view file) const { return manifest.find(file); }
};

// Reads DIR/manifest.json. Checks that every artifact it lists is a plain
// file name, exists in DIR and has the listed size (hashes are not redone).
Result<BakedImage> read_baked_image(const std::filesystem::path& dir);

// Parses a manifest.json text (no file checks); `source` names it in errors.
Result<BakedImage> parse_bake_manifest(std::string_view text, const std::string& source);

}  // namespace kiln
