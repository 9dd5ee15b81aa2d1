// Plan: a recipe turned into the stages a bake runs, as the user sees them
// (bootstrap, customize, assemble, finalize). The two expensive stages carry
// a content key, a hash of everything they read, which is how the stage
// cache knows it already holds their result: changing only an offline
// customisation (hostname, files, users) keeps both keys, so the bootstrap is
// never re-run for it. The plan also fixes every identifier of the image
// (filesystem and partition UUIDs, hash seed) from the recipe, which makes
// bakes reproducible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "builder/disk_layout.h"
#include "builder/storage_setup.h"
#include "base/architecture.h"
#include "base/uuid.h"
#include "recipes/recipe.h"

namespace kiln {

struct StagePlan {
  std::string name;         // "bootstrap", "import" or "customize"
  std::string key;          // hex sha256 of the stage's inputs
  std::string description;  // one line for progress and `kiln cache list`
};

struct ImageIdentity {
  Uuid root_filesystem;
  // The root partition and the LUKS header are named in /etc/crypttab, which
  // the in-image stage bakes into the initramfs: they follow from the
  // storage settings alone, so other recipe edits keep that stage cached.
  Uuid root_partition;
  Uuid luks;
  Uuid esp_partition;
  Uuid disk;
  Uuid hash_seed;
  uint32_t esp_volume_id = 0;
  // Filesystem (or swap) UUID of each LVM volume by name; the root one's is
  // root_filesystem.
  std::map<std::string, Uuid> volumes;
};

struct PlanInputs {
  std::optional<int64_t> source_date_epoch;  // from SOURCE_DATE_EPOCH
  int64_t now = 0;                           // the bake's start time
  std::string host_mirror;                   // used when bootstrap.mirror is empty
  // Where the sha256 of a large input (an image's disk, for bootstrap.from
  // an image directory) is remembered between bakes (base/file_hash_cache.h);
  // "": hashed every time.
  std::filesystem::path file_hashes;
};

struct Plan {
  const Recipe* recipe = nullptr;
  int64_t timestamp = 0;      // every time written into the image
  bool reproducible = false;  // SOURCE_DATE_EPOCH was given
  std::string mirror;         // archive URI for bootstrap and in-image apt
  const Architecture* arch = nullptr;  // the image's, from image.arch
  // bootstrap.packages and what the architecture adds: its kernel package
  // when the recipe names none and the image boots, and, on a disk with an
  // ESP for another architecture than this kiln's, the image's own
  // systemd-boot-efi (the host's boot loader would not run there).
  std::vector<std::string> bootstrap_packages;
  StagePlan source;           // bootstrap, or import of bootstrap.from
  // Runs programs inside the image; absent when no step needs to.
  std::optional<StagePlan> in_image;
  std::vector<CustomizeStep> in_image_steps;
  // What the storage layout needs inside the image; installed by the
  // in-image stage after the recipe's own steps.
  StorageSupport storage_support;
  std::vector<CustomizeStep> offline_steps;
  ImageIdentity identity;
  DiskLayout disk;
};

// Builds the plan. Hashing reads the files a stage depends on (scripts, an
// imported archive), so errors name those files.
Result<Plan> make_plan(const Recipe& recipe, const PlanInputs& inputs);

// Whether a step has to run programs inside the image.
bool runs_in_image(const CustomizeStep& step);

// Locales that need no generation (glibc carries them built in).
bool is_builtin_locale(std::string_view locale);

}  // namespace kiln
