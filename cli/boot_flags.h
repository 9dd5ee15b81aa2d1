// The options that describe an instance (its image, shape, network and
// personality), shared by `kiln boot` and `kiln run`: one definition each,
// so that the two commands take them alike.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "base/reporter.h"
#include "runtime/instance_manager.h"
#include "runtime/instance_plan.h"

namespace kiln::cli {

struct BootFlags {
  BootRequest request;
  std::string memory;
  std::vector<std::string> ssh_keys;
  std::string firstboot;
  std::string on_poweroff, on_reboot, on_crash;
  bool detach = false;
  bool console = false;
  int wait_ready = 0;  // seconds; 0: do not wait
  bool json = false;
  std::string connect;  // a libvirt URI: boot there (runtime/libvirt_instances)
  bool from_snapshot = false;
};

// Registers the instance options on `app`, filling `flags`.
void add_instance_options(CLI::App* app, BootFlags& flags);

// Registers only the VM shape's options (--memory, --vcpus).
void add_shape_options(CLI::App* app, BootFlags& flags);

// Starts the instance the flags describe: booted, or resumed from a
// snapshot with --from-snapshot.
Result<BootOutcome> start_instance(const InstanceStore& store, BootFlags& flags, Reporter& reporter);

// Where `kiln boot --from-snapshot` and `kiln snapshot` keep snapshots:
// beside the stage cache.
std::filesystem::path snapshot_root();

// Checks and converts what the options gave (sizes, policies) into the request.
Result<> apply_flags(BootFlags& flags);

}  // namespace kiln::cli
