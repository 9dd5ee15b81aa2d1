// kiln: bakes VM images from recipes and boots them.
#include <fmt/format.h>

#include "base/interrupt.h"
#include "cli/command.h"

namespace kiln::cli {

int report_error(const Error& error) {
  fmt::print(stderr, "kiln: error: {}\n", error.display());
  return error.exit_code();
}

}  // namespace kiln::cli

namespace {

constexpr const char* kFooter = R"(Exit codes:
  0    success
  1    an operation or an external tool failed
  2    bad usage or bad input (recipe, config, file)
  3    a program, package or kernel feature is missing on this host
  4    not enough space (the image content does not fit, or the disk is full)
  5    a signature or checksum did not verify
  130  interrupted (Ctrl-C); nothing half-written is left behind

Run `kiln help recipe` for the recipe format and `kiln help customize` for the
customisation operations.)";

}  // namespace

int main(int argc, char** argv) {
  kiln::install_interrupt_handlers();
  CLI::App app{"kiln: bake VM images from recipes, reproducibly and without mounts.", "kiln"};
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  kiln::cli::Registry registry;
  kiln::cli::register_validate(app, registry);
  kiln::cli::register_bake(app, registry);
  kiln::cli::register_cache(app, registry);
  kiln::cli::register_make_fs(app, registry);
  kiln::cli::register_import(app, registry);
  kiln::cli::register_boot(app, registry);
  kiln::cli::register_snapshot_commands(app, registry);
  kiln::cli::register_instance_commands(app, registry);
  kiln::cli::register_exec_commands(app, registry);
  kiln::cli::register_network_commands(app, registry);
  kiln::cli::register_migrate_commands(app, registry);
  kiln::cli::register_feed_commands(app, registry);
  kiln::cli::register_luks(app, registry);
  kiln::cli::register_container_commands(app, registry);
  kiln::cli::register_help(app, registry);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "kiln: error: {}\n", e.what());
    fmt::print(stderr, "Run `kiln --help` for usage.\n");
    return static_cast<int>(kiln::ErrorKind::kBadInput);
  }
  for (const auto& command : registry)
    if (command.app->parsed()) return command.run();
  return static_cast<int>(kiln::ErrorKind::kBadInput);
}
