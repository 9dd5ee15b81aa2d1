#include "builder/bootstrap.h"

#include <sched.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/files.h"
#include "base/host_memory.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "builder/initramfs_deferral.h"
#include "builder/package_cache.h"
#include "fetch/uri_fetch.h"
#include "formats/tree/rootfs_tree.h"

namespace kiln {
namespace {

std::string joined(const std::vector<std::string>& items, char separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// Bootstrap tools mount /proc and friends inside the new root. In a private
// mount namespace those mounts never show on the host and vanish with the
// tool, whatever way it exits.
bool enter_private_mount_namespace() {
  if (::geteuid() != 0) return true;  // unprivileged tools use their own namespaces
  if (::unshare(CLONE_NEWNS) != 0) return false;
  return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
}

// Shows the tool's "I: ..." progress lines as step notes and its "W: ..."
// lines (its own, and the package cache hook's) as warnings.
std::function<void(std::string_view)> progress_lines(Reporter& reporter) {
  return [&reporter](std::string_view line) {
    if (line.starts_with("I: ")) reporter.note(line.substr(3));
    if (line.starts_with("W: ")) reporter.warn(line.substr(3));
  };
}

Error tool_failure(Error error, const Plan& plan) {
  const auto& b = plan.recipe->bootstrap;
  std::string what = fmt::format("bootstrap with {} ({} {}) failed", b.tool.value, b.suite.value,
                                 b.variant.value);
  error.message = what + ": " + error.message;
  if (error.where.empty()) error.where = b.suite.where.line ? b.suite.where : b.tool.where;
  return error;
}

// The package cache goes with every hook when there is one; the initramfs
// modules with the customize hook, which makes the initramfs.
std::string hook_command(const BootstrapHooks& hooks, std::string_view point,
                         const std::vector<std::string>& initramfs_modules = {}) {
  std::string command = fmt::format("{} bootstrap-hook {}", shell_quoted(hooks.kiln.string()), point);
  if (!hooks.package_cache.empty()) command += " --cache " + shell_quoted(hooks.package_cache.string());
  if (!initramfs_modules.empty()) command += " --initramfs-modules " + shell_quoted(joined(initramfs_modules, ','));
  return command + " \"$1\"";
}

std::vector<std::string> hook_arguments(const BootstrapHooks& hooks, const BootstrapSection& b) {
  std::vector<std::string> args;
  if (!hooks.package_cache.empty()) {
    // The essential packages' files stay until the customize hook has kept
    // them; mmdebstrap's cleanup (apt-get clean) removes them all the same.
    args.push_back("--skip=essential/unlink");
    args.push_back("--setup-hook=" + hook_command(hooks, "setup"));
  }
  args.push_back("--customize-hook=" + hook_command(hooks, "customize", b.initramfs_modules.value));
  return args;
}

Result<> run_mmdebstrap(const Plan& plan, const std::filesystem::path& out_tar, Reporter& reporter,
                        CommandRunner& runner, const BootstrapResources& resources) {
  const BootstrapSection& b = plan.recipe->bootstrap;
  Command command;
  command.argv = {"mmdebstrap",
                  "--variant=" + b.variant.value,
                  "--architectures=" + std::string(plan.arch->dpkg),
                  "--components=" + joined(b.components.value, ','),
                  "--format=tar",
                  "--aptopt=Acquire::Retries \"3\""};
  for (const std::string& option : b.apt_options.value) command.argv.push_back("--aptopt=" + option);
  if (!plan.bootstrap_packages.empty()) command.argv.push_back("--include=" + joined(plan.bootstrap_packages, ','));
  if (resources.hooks) {
    auto hooks = hook_arguments(*resources.hooks, b);
    command.argv.insert(command.argv.end(), hooks.begin(), hooks.end());
  } else if (!b.initramfs_modules.value.empty()) {
    return fail_at(b.initramfs_modules.where, "bootstrap.initramfs_modules need kiln's mmdebstrap hooks, which this "
                                              "bake runs without");
  }
  command.argv.insert(command.argv.end(), {b.suite.value, out_tar.string(), plan.mirror});
  command.env = reproducible_env(plan);
  if (resources.hooks) command.env.push_back(kDeferInitramfsEnv);  // the customize hook makes it
  if (!resources.workspace.empty()) {
    command.env.push_back("TMPDIR=" + resources.workspace.string());
    reporter.note(fmt::format("building the tree in {} (tmpfs)", resources.workspace.string()));
  }
  command.in_child = enter_private_mount_namespace;
  command.on_stderr_line = progress_lines(reporter);
  auto done = runner.run(command);
  if (!done) return std::unexpected(tool_failure(std::move(done).error(), plan));
  return {};
}

Result<> run_debootstrap(const Plan& plan, const std::filesystem::path& out_tar,
                         const std::filesystem::path& work_dir, Reporter& reporter, CommandRunner& runner) {
  const BootstrapSection& b = plan.recipe->bootstrap;
  std::filesystem::path tree = work_dir / "rootfs";
  std::error_code ec;
  std::filesystem::create_directories(tree, ec);
  if (ec) return fail_errno("cannot create", tree.string(), ec.value());
  Command command;
  command.argv = {"debootstrap", "--arch=" + std::string(plan.arch->dpkg),
                  "--components=" + joined(b.components.value, ',')};
  if (b.variant.value != "default") command.argv.push_back("--variant=" + b.variant.value);
  if (!plan.bootstrap_packages.empty()) command.argv.push_back("--include=" + joined(plan.bootstrap_packages, ','));
  command.argv.insert(command.argv.end(), {b.suite.value, tree.string(), plan.mirror});
  command.env = reproducible_env(plan);
  command.in_child = enter_private_mount_namespace;
  command.on_stderr_line = progress_lines(reporter);
  // debootstrap reports most failures on stdout ("E: Couldn't find these debs").
  auto done = runner.run(command);
  if (!done) return std::unexpected(tool_failure(std::move(done).error(), plan));
  // What mmdebstrap cleans up by itself: package caches and lists.
  for (const char* dir : {"var/cache/apt/archives", "var/lib/apt/lists"}) {
    for (const auto& entry : std::filesystem::directory_iterator(tree / dir, ec))
      if (entry.is_regular_file()) std::filesystem::remove(entry.path(), ec);
  }
  reporter.note("packing the tree into a tar");
  return write_tree_as_tar(tree, out_tar, plan.reproducible ? plan.timestamp : 0);
}

}  // namespace

std::vector<std::string> reproducible_env(const Plan& plan) {
  std::vector<std::string> env = {"LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"};
  if (plan.reproducible) env.push_back(fmt::format("SOURCE_DATE_EPOCH={}", plan.timestamp));
  return env;
}

std::filesystem::path local_import_path(const Recipe& recipe) {
  auto local = local_path_of(recipe.bootstrap.from.value);
  if (!local) return {};
  return local->is_relative() ? recipe.base_dir / *local : *local;
}

Result<> bootstrap_rootfs(const Plan& plan, const std::filesystem::path& out_tar,
                          const std::filesystem::path& work_dir, Reporter& reporter, CommandRunner& runner,
                          const BootstrapResources& resources) {
  if (plan.recipe->bootstrap.tool.value == "debootstrap")
    return run_debootstrap(plan, out_tar, work_dir, reporter, runner);
  return run_mmdebstrap(plan, out_tar, reporter, runner, resources);
}

std::filesystem::path memory_workspace(uint64_t tree_bytes) {
  const std::filesystem::path shm = "/dev/shm";
  struct statfs fs;
  if (::statfs(shm.c_str(), &fs) != 0 || fs.f_type != TMPFS_MAGIC) return {};
  // Room for the tree, the packages unpacked into it and the tar's page cache.
  const uint64_t need = tree_bytes + tree_bytes / 2 + (1ull << 30);
  uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_bsize;
  if (free_bytes < need || host_meminfo_bytes("MemAvailable") < need) return {};
  return shm;
}

namespace {

Result<PackageTransfer> provide_cached_packages(const std::filesystem::path& cache_dir,
                                                const std::filesystem::path& rootfs, CommandRunner& runner) {
  const char* apt_config = std::getenv("MMDEBSTRAP_APT_CONFIG");
  if (!apt_config || !*apt_config)
    return fail(ErrorKind::kBadInput, "bootstrap-hook runs as mmdebstrap's setup hook (MMDEBSTRAP_APT_CONFIG is not set)");
  Command update;
  update.argv = {"apt-get", "update", "--error-on=any"};
  update.env = {std::string("APT_CONFIG=") + apt_config};
  update.cwd = rootfs.string();
  auto updated = runner.run(update);
  if (!updated) return std::unexpected(std::move(updated).error().with_context("apt-get update (package cache)"));
  KILN_ASSIGN(PackagesIndex index, PackagesIndex::load_apt_lists(rootfs / "var/lib/apt/lists"));
  std::filesystem::path archives = rootfs / "var/cache/apt/archives";
  std::error_code ec;
  std::filesystem::create_directories(archives, ec);
  if (ec) return fail_errno("cannot create", archives.string(), ec.value());
  return PackageCache(cache_dir).provide(index, archives);
}

Result<PackageTransfer> collect_fetched_packages(const std::filesystem::path& cache_dir,
                                                 const std::filesystem::path& rootfs) {
  KILN_ASSIGN(PackagesIndex index, PackagesIndex::load_apt_lists(rootfs / "var/lib/apt/lists"));
  return PackageCache(cache_dir).collect(index, rootfs / "var/cache/apt/archives");
}

void report_transfer(BootstrapHookReport& report, const PackageTransfer& transfer, bool provided) {
  report.notes.push_back(fmt::format("{} {} .deb files ({}) {} the package cache", provided ? "took" : "kept",
                                     transfer.files, format_size(transfer.bytes), provided ? "from" : "in"));
  if (transfer.refused)
    report.warnings.push_back(
        fmt::format("{} cached .deb files did not match the hash the index lists; not used", transfer.refused));
}

}  // namespace

Result<BootstrapHookReport> run_bootstrap_hook(std::string_view point, const std::filesystem::path& package_cache,
                                               const std::vector<std::string>& initramfs_modules,
                                               const std::filesystem::path& rootfs, CommandRunner& runner) {
  BootstrapHookReport report;
  if (point == "setup") {
    if (package_cache.empty()) return report;
    KILN_ASSIGN(PackageTransfer provided, provide_cached_packages(package_cache, rootfs, runner));
    report_transfer(report, provided, true);
  } else if (point == "customize") {
    KILN_ASSIGN(std::vector<std::string> made, make_missing_initramfs(rootfs, runner, initramfs_modules));
    for (const std::string& version : made)
      report.notes.push_back(fmt::format("made the initramfs of {} once, after every package was set up", version));
    if (!package_cache.empty()) {
      KILN_ASSIGN(PackageTransfer kept, collect_fetched_packages(package_cache, rootfs));
      report_transfer(report, kept, false);
    }
  } else {
    return fail(ErrorKind::kBadInput, "bootstrap-hook: unknown point \"{}\" (setup or customize)", point);
  }
  return report;
}

}  // namespace kiln
