// The kiln command line: each subcommand registers its flags and a runner
// that returns the exit code. The runners stay thin: parse, call a library,
// print. Errors leave through report_error, the one place that formats
// "kiln: error: ..." and picks the exit code.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "base/reporter.h"

namespace kiln::cli {

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

using Registry = std::vector<Subcommand>;

int report_error(const Error& error);

// Prints a Result's error, or runs `on_success` and returns 0.
template <class T, class F>
int finish(const Result<T>& result, F&& on_success) {
  if (!result) return report_error(result.error());
  if constexpr (std::is_void_v<T>) on_success();
  else on_success(*result);
  return 0;
}

// `--connect URI`: the instance is on that libvirt host. One text for
// every verb that takes it.
inline std::shared_ptr<std::string> add_connect(CLI::App* app) {
  auto connect = std::make_shared<std::string>();
  app->add_option("--connect", *connect, "The instance is on the libvirt host at this URI (default $KILN_CONNECT)");
  return connect;
}

void register_validate(CLI::App& root, Registry& registry);
void register_bake(CLI::App& root, Registry& registry);
void register_cache(CLI::App& root, Registry& registry);
void register_make_fs(CLI::App& root, Registry& registry);
void register_import(CLI::App& root, Registry& registry);
void register_boot(CLI::App& root, Registry& registry);
void register_snapshot_commands(CLI::App& root, Registry& registry);  // snapshot make, list, prune
void register_instance_commands(CLI::App& root, Registry& registry);
void register_exec_commands(CLI::App& root, Registry& registry);  // exec, cp, run
void register_network_commands(CLI::App& root, Registry& registry);  // network create, list, rm
void register_migrate_commands(CLI::App& root, Registry& registry);  // migrate, migrate-target
void register_feed_commands(CLI::App& root, Registry& registry);  // publish, pull
void register_luks(CLI::App& root, Registry& registry);
void register_container_commands(CLI::App& root, Registry& registry);  // container, diff, patch
void register_help(CLI::App& root, Registry& registry);

}  // namespace kiln::cli
