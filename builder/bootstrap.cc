#include "builder/bootstrap.h"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "base/files.h"
#include "base/subprocess.h"
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

// Shows the tool's "I: ..." progress lines as step notes.
std::function<void(std::string_view)> progress_lines(Reporter& reporter) {
  return [&reporter](std::string_view line) {
    if (line.starts_with("I: ")) reporter.note(line.substr(3));
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

Result<> run_mmdebstrap(const Plan& plan, const std::filesystem::path& out_tar, Reporter& reporter,
                        CommandRunner& runner) {
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
  command.argv.insert(command.argv.end(), {b.suite.value, out_tar.string(), plan.mirror});
  command.env = reproducible_env(plan);
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
                          const std::filesystem::path& work_dir, Reporter& reporter, CommandRunner& runner) {
  if (plan.recipe->bootstrap.tool.value == "debootstrap")
    return run_debootstrap(plan, out_tar, work_dir, reporter, runner);
  return run_mmdebstrap(plan, out_tar, reporter, runner);
}

}  // namespace kiln
