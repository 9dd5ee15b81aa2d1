#include "builder/baker.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>

#include <chrono>
#include <cstdlib>
#include <ctime>

#include "base/files.h"
#include "base/size.h"
#include "base/stale_temps.h"
#include "fetch/uri_fetch.h"
#include "builder/apt_sources.h"
#include "builder/assembler.h"
#include "builder/bootstrap.h"
#include "builder/foreign_emulation.h"
#include "builder/host_target.h"
#include "builder/image_chroot.h"
#include "builder/image_source.h"
#include "builder/plan.h"
#include "builder/package_cache.h"
#include "builder/stage_cache.h"
#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Result<> check_output_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  if (!fs::is_directory(dir, ec))
    return fail(ErrorKind::kBadInput, "{}: exists and is not a directory; choose another -o", dir.string());
  if (fs::is_empty(dir, ec) || fs::exists(dir / "manifest.json", ec)) return {};
  return fail(ErrorKind::kBadInput,
              "{}: exists and is not a kiln output directory (no manifest.json); remove it or choose another -o",
              dir.string());
}

namespace {

// Runs a cached stage: returns the path of its archive, from the cache or
// freshly made by `produce(out_tar, work_dir)`.
class StageRunner {
 public:
  StageRunner(const BakeOptions& options, std::optional<StageCache> cache, fs::path scratch_parent,
              Reporter& reporter)
      : options_(options), cache_(std::move(cache)), scratch_parent_(std::move(scratch_parent)),
        reporter_(reporter) {}

  template <class Produce>
  Result<fs::path> run(const StagePlan& stage, const std::string& file_name, Produce produce) {
    auto started = Clock::now();
    reporter_.step(stage.name, stage.description);
    if (cache_) {
      if (auto entry = cache_->lookup(stage.key)) {
        reporter_.done(fmt::format("cached ({})", stage.key.substr(0, 12)));
        outcomes_.push_back({stage.name, stage.key, true, seconds_since(started)});
        return entry->dir / file_name;
      }
    }
    KILN_ASSIGN(TempDir scratch, cache_ ? cache_->begin() : TempDir::create(scratch_parent_, "stage"));
    fs::path work = scratch.path() / "work";
    fs::create_directories(work);
    KILN_TRY(produce(scratch.path() / file_name, work));
    KILN_TRY(remove_tree(work));
    fs::path result;
    if (cache_) {
      KILN_ASSIGN(CacheEntry entry, cache_->commit(std::move(scratch), stage.key, stage.name, stage.description));
      result = entry.dir / file_name;
    } else {
      result = scratch.path() / file_name;
      uncached_.push_back(std::move(scratch));
    }
    reporter_.done();
    outcomes_.push_back({stage.name, stage.key, false, seconds_since(started)});
    return result;
  }

  std::vector<StageOutcome>& outcomes() { return outcomes_; }

  // mmdebstrap's hooks into kiln, with the package cache beside the stage
  // cache when there is one.
  std::optional<BootstrapHooks> bootstrap_hooks() const {
    if (options_.hook_program.empty()) return std::nullopt;
    return BootstrapHooks{options_.hook_program, cache_ ? fs::absolute(PackageCache::dir_in(cache_->root())) : ""};
  }

 private:
  const BakeOptions& options_;
  std::optional<StageCache> cache_;
  fs::path scratch_parent_;
  Reporter& reporter_;
  std::vector<TempDir> uncached_;  // stage results of a --no-cache bake, removed at the end
  std::vector<StageOutcome> outcomes_;
};

Result<fs::path> source_archive(const Plan& plan, StageRunner& stages, Reporter& reporter) {
  const Recipe& recipe = *plan.recipe;
  if (recipe.bootstrap.from.value.empty()) {
    return stages.run(plan.source, "rootfs.tar", [&](const fs::path& out, const fs::path& work) -> Result<> {
      KILN_TRY(ensure_foreign_emulation(*plan.arch, BinfmtHost::real(), reporter));
      BootstrapResources resources;
      resources.hooks = stages.bootstrap_hooks();
      // In RAM a killed bake's tree would hold memory until a reboot: it goes
      // in a directory tagged with this process, which the next bake removes
      // if this one was killed.
      std::optional<TempDir> workspace;
      if (fs::path shm = memory_workspace(recipe.storage.size.value); !shm.empty()) {
        remove_stale_temp_dirs(shm, "kiln-bootstrap");
        if (auto made = create_tagged_temp_dir(shm, "kiln-bootstrap")) {
          workspace.emplace(std::move(*made));
          // apt downloads as its _apt user, which must reach the tree.
          fs::permissions(workspace->path(), fs::perms(0755), fs::perm_options::replace);
          resources.workspace = workspace->path();
        }
      }
      return bootstrap_rootfs(plan, out, work, reporter, system_runner(), resources);
    });
  }
  const std::string& from = recipe.bootstrap.from.value;
  if (is_remote_uri(from)) {
    return stages.run(plan.source, "rootfs.archive", [&](const fs::path& out, const fs::path&) -> Result<> {
      FetchOptions fetch;
      fetch.progress = [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); };
      auto fetched = fetch_uri(from, out, fetch);
      if (!fetched) return std::unexpected(std::move(fetched).error().with_context("bootstrap.from"));
      return {};
    });
  }
  fs::path path = local_import_path(recipe);
  if (is_image_directory(path)) {
    return stages.run(plan.source, "rootfs.tar", [&](const fs::path& out, const fs::path&) -> Result<> {
      KILN_ASSIGN(ImageRootFilesystem root, image_root_filesystem(path));
      return export_image_root(root, out, reporter);
    });
  }
  reporter.step("import", path.string());
  auto reader = TarReader::open(path);
  if (!reader) {
    Error error = std::move(reader).error();
    error.where = recipe.bootstrap.from.where;
    error.message = "bootstrap.from: " + error.message;
    return std::unexpected(std::move(error));
  }
  reporter.done();
  return path;
}

}  // namespace

Result<BakeResult> bake(const Recipe& recipe, const BakeOptions& options, Reporter& reporter) {
  auto started = Clock::now();
  fs::path output = fs::absolute(options.output_dir).lexically_normal();
  if (output.filename().empty()) output = output.parent_path();
  KILN_TRY(check_output_dir(output));
  std::optional<HostTarget> target;
  if (!options.target.empty()) {
    KILN_ASSIGN(target, check_host_target(options.target, recipe.storage.size.value, TargetHost::real()));
  }

  PlanInputs inputs;
  inputs.source_date_epoch = options.source_date_epoch;
  inputs.now = static_cast<int64_t>(std::time(nullptr));
  inputs.host_mirror = host_debian_mirror();
  if (options.use_cache)
    inputs.file_hashes = (options.cache_dir.empty() ? StageCache::default_root() : options.cache_dir) / "file-hashes";
  KILN_ASSIGN(Plan plan, make_plan(recipe, inputs));

  std::optional<StageCache> cache;
  std::optional<CacheLock> lock;
  if (options.use_cache) {
    cache.emplace(options.cache_dir.empty() ? StageCache::default_root() : options.cache_dir);
    KILN_ASSIGN(lock, CacheLock::shared(*cache));
  }
  std::error_code ec;
  fs::create_directories(output.parent_path(), ec);
  if (ec) return fail_errno("cannot create", output.parent_path().string(), ec.value());
  // What a killed bake of this output left (its work and staged output
  // directories) goes now; a live bake's stays, as its tag names it.
  const std::string building_prefix = output.filename().string() + ".kiln";
  const std::string staged_prefix = output.filename().string() + ".new";
  for (const std::string& prefix : {building_prefix, staged_prefix})
    if (size_t removed = remove_stale_temp_dirs(output.parent_path(), prefix))
      reporter.note(fmt::format("removed {} leftover {} of a bake that was killed", removed,
                                removed == 1 ? "directory" : "directories"));
  KILN_ASSIGN(TempDir building, create_tagged_temp_dir(output.parent_path(), building_prefix));
  StageRunner stages(options, std::move(cache), building.path(), reporter);

  KILN_ASSIGN(fs::path archive, source_archive(plan, stages, reporter));
  if (plan.in_image) {
    KILN_ASSIGN(archive, stages.run(*plan.in_image, "rootfs.tar", [&](const fs::path& out, const fs::path& work) -> Result<> {
      KILN_TRY(ensure_foreign_emulation(*plan.arch, BinfmtHost::real(), reporter));
      return run_in_image_steps(plan, archive, out, work, reporter, system_runner());
    }));
  }

  auto assemble_started = Clock::now();
  KILN_ASSIGN(TempDir staged, create_tagged_temp_dir(output.parent_path(), staged_prefix));
  reporter.step("assemble", fmt::format("{} layout, {}", name_of(recipe.storage.layout.value),
                                        format_size(recipe.storage.size.value)));
  KILN_ASSIGN(AssembledImage image, assemble(plan, archive, staged.path(), reporter));
  for (const std::string& note : image.notes) reporter.warn(note);
  reporter.done();
  stages.outcomes().push_back({"assemble", "", false, seconds_since(assemble_started)});

  auto finalize_started = Clock::now();
  reporter.step("finalize", output.string());
  KILN_ASSIGN(FinalizedOutput finalized, finalize_outputs(plan, image, staged.path(), output, reporter));
  KILN_TRY(install_directory(std::move(staged), output));
  reporter.done();
  stages.outcomes().push_back({"finalize", "", false, seconds_since(finalize_started)});

  BakeResult result;
  if (target) {
    auto target_started = Clock::now();
    bool gpt = recipe.storage.layout.value != StorageLayout::kPlain;
    reporter.step("target", target->spec);
    KILN_ASSIGN(result.target, write_host_target(*target, output / (gpt ? "disk.raw" : "root.img"), gpt, reporter, system_runner()));
    reporter.done();
    stages.outcomes().push_back({"target", "", false, seconds_since(target_started)});
  }
  result.output_dir = output;
  result.artifacts = std::move(finalized.manifest.artifacts);
  result.stages = std::move(stages.outcomes());
  result.seconds = seconds_since(started);
  return result;
}

}  // namespace kiln
