// `kiln migrate NAME --to ssh://HOST`: an instance of kiln's own qemu
// backend moved, live, to another kiln host (runtime/migration). And
// `kiln migrate-target`, what the source runs on the target over ssh.
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "cli/command.h"
#include "runtime/image_transfer.h"
#include "runtime/instance_store.h"
#include "runtime/libvirt_instances.h"
#include "runtime/libvirt_migration.h"
#include "runtime/migration.h"

namespace kiln::cli {
namespace {

nlohmann::json outcome_json(const std::string& name, const MigrationOutcome& o) {
  return {{"name", name},          {"target", o.target},         {"by", o.by_libvirt ? "libvirt" : "kiln"},
          {"downtime_ms", o.downtime_ms()}, {"qemu_downtime_ms", o.qemu_downtime_ms},
          {"handover_ms", o.handover_ms},   {"stream_ms", o.stream_ms},
          {"total_ms", o.total_ms},         {"ram_bytes", o.ram_bytes},
          {"disk_bytes", o.disk_bytes},     {"sent_files", o.sent_files},
          {"image_bytes_sent", o.image_bytes_sent}};
}

void print_outcome(const std::string& name, const MigrationOutcome& o) {
  if (o.by_libvirt) {
    fmt::print("{} migrated to {}: downtime {:.0f} ms (libvirt's figure), {:.1f} s in all\n", name, o.target,
               o.downtime_ms(), o.total_ms / 1000);
    fmt::print("  sent: memory {}, disk writes {}, image volumes {}\n", format_size(o.ram_bytes),
               format_size(o.disk_bytes),
               o.sent_files.empty() ? std::string("none (the target had them)")
                                    : fmt::format("{} ({} with the seed disk)", o.sent_files.size(),
                                                  format_size(o.image_bytes_sent)));
    return;
  }
  fmt::print("{} migrated to {}: downtime {:.0f} ms (qemu's {:.0f} ms, then {:.0f} ms to run it there), {:.1f} s in "
             "all\n",
             name, o.target, o.downtime_ms(), o.qemu_downtime_ms, o.handover_ms, o.total_ms / 1000);
  // qemu 7.2 counts block migration's bytes in no figure of query-migrate.
  fmt::print("  sent: memory {}{}, image files {}\n", format_size(o.ram_bytes),
             o.disk_bytes ? fmt::format(", disk writes {}", format_size(o.disk_bytes)) : "",
             o.sent_files.empty() ? std::string("none (the target had them)")
                                  : fmt::format("{} ({})", o.sent_files.size(), format_size(o.image_bytes_sent)));
}

void register_migrate(CLI::App& root, Registry& registry) {
  struct Flags {
    std::string name, to;
    bool live = false, json = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* migrate = root.add_subcommand(
      "migrate", "Move a running instance (qemu) to another host, as xm migrate did: kiln to kiln over ssh, or "
      "libvirt to libvirt");
  migrate->footer(
      "The target is ssh://[USER@]HOST[:PORT], with kiln installed there; ?keyfile=PATH and ?known_hosts=PATH\n"
      "name the key and the host keys to trust, as in libvirt's URIs. The host key must be known: nothing\n"
      "asks. Image files the target lacks go first (once: it keeps them by content); then memory, devices\n"
      "and what the guest wrote over its image. The guest arrives paused and runs there once it is whole;\n"
      "only then does the instance end here. Until then a failure leaves it running here, and no instance\n"
      "there (image files that arrived whole stay, kept by content, for the next attempt).\n"
      "Instances of the uml backend, on kiln networks, or publishing ports do not migrate.\n\n"
      "With --connect URI (or $KILN_CONNECT) the instance is a libvirt one, and --to names another libvirt\n"
      "host (qemu+ssh://root@host2/system): libvirt migrates it (virDomainMigrate3, storage not shared). The\n"
      "volumes it boots from go to kiln's pool there first, from the source's, each image once; the\n"
      "overlay's data goes with the guest. It is defined there, and undefined here once it runs there.");
  migrate->add_option("name", flags->name, "The instance")->required();
  migrate->add_option("--to", flags->to, "The target kiln host: ssh://[USER@]HOST[:PORT]; with --connect, a "
                                         "libvirt URI")->required();
  auto connect = add_connect(migrate);
  migrate->add_flag("--live", flags->live, "Keep the guest running while its memory goes (it stops only for the "
                                           "last of it); without it the guest stops first");
  migrate->add_flag("--json", flags->json, "Print progress and the outcome as JSON");
  registry.push_back({migrate, [flags, connect] {
                        Reporter reporter(Reporter::detect(flags->json));
                        std::string from = connect_uri(*connect);
                        if (from.empty() && !flags->to.starts_with("ssh://") &&
                            flags->to.find("://") != std::string::npos)
                          return report_error(Error{ErrorKind::kBadInput, fmt::format(
                              "--to {}: a libvirt host; name the instance's own with --connect (or $KILN_CONNECT)",
                              flags->to), {}, {}});
                        if (!from.empty() && flags->to.starts_with("ssh://"))
                          return report_error(Error{ErrorKind::kBadInput, fmt::format(
                              "--to {} with --connect {}: an ssh:// target is another kiln host, for kiln's own "
                              "instances; a libvirt instance goes to a libvirt URI (qemu+ssh://...)", flags->to,
                              from), {}, {}});
                        auto outcome = from.empty()
                                           ? migrate_instance(InstanceStore::open(), flags->name, flags->to,
                                                              flags->live, reporter)
                                           : migrate_libvirt_instance(from, flags->name, flags->to, flags->live,
                                                                      reporter);
                        return finish(outcome, [&](const MigrationOutcome& o) {
                          if (flags->json) fmt::print("{}\n", outcome_json(flags->name, o).dump());
                          else print_outcome(flags->name, o);
                        });
                      }});
}

void register_migrate_target(CLI::App& root, Registry& registry) {
  CLI::App* target = root.add_subcommand(
      "migrate-target", "kiln migrate's side on the target host (run there over ssh by the source, not by hand)");
  target->group("Internal");
  target->require_subcommand(1);

  struct Probe {
    std::string name;
    bool kvm = false;
    std::vector<std::string> hashes;
  };
  auto probe = std::make_shared<Probe>();
  CLI::App* probe_app = target->add_subcommand("probe", "Say, as JSON, which image files this host lacks and "
                                                        "whether it can run the instance");
  probe_app->add_option("--name", probe->name, "The instance's name")->required();
  probe_app->add_flag("--kvm", probe->kvm, "The instance runs under KVM");
  probe_app->add_option("hashes", probe->hashes, "SHA-256 of each image file");
  registry.push_back({probe_app, [probe] {
                        return finish(probe_migration_target(InstanceStore::open(), probe->name, probe->kvm,
                                                             probe->hashes),
                                      [](const std::string& answer) { fmt::print("{}\n", answer); });
                      }});

  struct Image {
    std::string sha256;
    uint64_t size = 0;
  };
  auto image = std::make_shared<Image>();
  CLI::App* image_app = target->add_subcommand("image", "Keep the image file on standard input (its data runs) "
                                                        "under its SHA-256");
  image_app->add_option("sha256", image->sha256, "The file's SHA-256")->required();
  image_app->add_option("size", image->size, "The file's size in bytes")->required();
  registry.push_back({image_app, [image] {
                        return finish(receive_image_file(STDIN_FILENO, InstanceStore::open().images_root(),
                                                         image->sha256, image->size),
                                      [] {});
                      }});

  CLI::App* receive_app = target->add_subcommand("receive", "Receive an instance: its header and seed disk on "
                                                            "standard input, answers on standard output");
  registry.push_back({receive_app, [] {
                        Reporter reporter(Reporter::Mode::kQuiet);
                        return finish(receive_migration(InstanceStore::open(), STDIN_FILENO, STDOUT_FILENO, reporter),
                                      [] {});
                      }});
}

}  // namespace

void register_migrate_commands(CLI::App& root, Registry& registry) {
  register_migrate(root, registry);
  register_migrate_target(root, registry);
}

}  // namespace kiln::cli
