// Baker: runs a bake from a parsed recipe to a finished output directory,
// stage by stage as the user sees them (bootstrap, customize, assemble,
// finalize), reusing cached stages. The output directory appears complete or
// not at all: everything is built beside it and swapped in at the end, so a
// failure or Ctrl-C leaves the previous output (if any) untouched and no
// temporary files behind.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/image_outputs.h"
#include "recipes/recipe.h"

namespace kiln {

struct BakeOptions {
  std::filesystem::path output_dir;
  std::filesystem::path cache_dir;  // empty: StageCache::default_root()
  bool use_cache = true;
  // The kiln executable that mmdebstrap's hooks call back
  // (builder/bootstrap.h, BootstrapHooks); kiln bake sets it. Empty: no
  // hooks, so no package cache and no deferred initramfs.
  std::string hook_program;
  std::optional<int64_t> source_date_epoch;
  // A host block device that also receives the image (builder/host_target.h):
  // "lvm:VG/LV" or "/dev/...". Checked before anything is baked.
  std::string target;
};

struct StageOutcome {
  std::string name;
  std::string key;  // empty for stages without one
  bool cached = false;
  double seconds = 0;
};

struct BakeResult {
  std::filesystem::path output_dir;
  std::vector<ManifestArtifact> artifacts;
  std::vector<StageOutcome> stages;
  std::filesystem::path target;  // the device written to, if any
  double seconds = 0;
};

Result<BakeResult> bake(const Recipe& recipe, const BakeOptions& options, Reporter& reporter);

// Whether `dir` may receive an output: missing, empty or a kiln output
// (which is replaced); anything else is the user's, and refused.
Result<> check_output_dir(const std::filesystem::path& dir);

}  // namespace kiln
