#include "builder/plan.h"

#include <algorithm>

#include "base/file_hash_cache.h"
#include "base/hash.h"
#include "builder/bootstrap.h"
#include "builder/image_source.h"
#include "fetch/uri_fetch.h"

namespace kiln {
namespace {

// Bumped when a stage's output for the same inputs changes with kiln itself.
constexpr std::string_view kBootstrapFormat = "kiln-bootstrap-1";
constexpr std::string_view kCustomizeFormat = "kiln-customize-1";

std::vector<std::string> sorted_unique(std::vector<std::string> items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  return items;
}

void hash_list(Hasher& hasher, const std::vector<std::string>& items) {
  hasher.field(std::to_string(items.size()));
  for (const auto& item : items) hasher.field(item);
}

StagePlan bootstrap_stage(const Recipe& recipe, const Plan& plan) {
  const BootstrapSection& b = recipe.bootstrap;
  Hasher hasher;
  hasher.field(kBootstrapFormat).field(b.tool.value).field(b.distro.value).field(b.suite.value)
      .field(b.variant.value).field(plan.arch->dpkg).field(plan.mirror);
  hash_list(hasher, sorted_unique(b.components.value));
  hash_list(hasher, sorted_unique(plan.bootstrap_packages));
  // Only when given, so that recipes without any keep their keys.
  if (!b.apt_options.value.empty()) hash_list(hasher.field("apt_options"), b.apt_options.value);
  if (!b.initramfs_modules.value.empty()) hash_list(hasher.field("initramfs_modules"), b.initramfs_modules.value);
  hasher.field(plan.reproducible ? std::to_string(plan.timestamp) : "now");
  std::string packages = plan.bootstrap_packages.empty()
                             ? std::string()
                             : fmt::format(", {} extra packages", plan.bootstrap_packages.size());
  return {"bootstrap", hasher.hex_digest(),
          fmt::format("{} {}/{} {}{}", b.tool.value, b.suite.value, b.variant.value, plan.arch->dpkg, packages)};
}

Result<StagePlan> import_stage(const Recipe& recipe, const PlanInputs& inputs) {
  const std::string& from = recipe.bootstrap.from.value;
  Hasher hasher;
  hasher.field(kBootstrapFormat).field("import");
  if (is_remote_uri(from)) {
    // A download is keyed by its URI; `--no-cache` fetches it again.
    hasher.field(from);
  } else if (std::filesystem::path dir = local_import_path(recipe); is_image_directory(dir)) {
    // An image is keyed by its root filesystem's bytes (the export is a
    // function of them), not by its other files.
    auto root = image_root_filesystem(dir);
    if (!root) return fail_at(recipe.bootstrap.from.where, "bootstrap.from: {}", root.error().message);
    if (root->architecture != recipe.image.arch.value)
      return fail_at(recipe.bootstrap.from.where, "bootstrap.from: {} is an {} image, and image.arch is {}",
                     dir.string(), root->architecture, recipe.image.arch.value);
    auto digest = inputs.file_hashes.empty() ? file_digest_hex(root->file)
                                             : FileHashCache(inputs.file_hashes).sha256(root->file);
    if (!digest) return fail_at(recipe.bootstrap.from.where, "bootstrap.from: {}", digest.error().message);
    hasher.field("image").field(*digest).field(std::to_string(root->offset));
    return StagePlan{"import", hasher.hex_digest(), fmt::format("import image {}", from)};
  } else {
    auto digest = file_digest_hex(dir);
    if (!digest)
      return fail_at(recipe.bootstrap.from.where, "bootstrap.from: {}", digest.error().message);
    hasher.field(*digest);
  }
  return StagePlan{"import", hasher.hex_digest(), fmt::format("import {}", from)};
}

Result<StagePlan> in_image_stage(const Plan& plan) {
  Hasher hasher;
  hasher.field(kCustomizeFormat).field(plan.source.key).field(plan.mirror);
  hasher.field(plan.reproducible ? std::to_string(plan.timestamp) : "now");
  size_t packages = 0, commands = 0;
  for (const CustomizeStep& step : plan.in_image_steps) {
    if (const auto* install = std::get_if<InstallPackages>(&step.operation)) {
      hasher.field("packages");
      hash_list(hasher, install->packages);
      packages += install->packages.size();
    } else if (const auto* locale = std::get_if<SetLocale>(&step.operation)) {
      hasher.field("locale").field(locale->locale);
    } else if (const auto* run = std::get_if<RunCommand>(&step.operation)) {
      ++commands;
      hasher.field("run").field(run->command);
      if (!run->script_file.empty()) {
        auto digest = file_digest_hex(run->script_file);
        if (!digest) return fail_at(step.where, "customize.run: {}", digest.error().message);
        hasher.field(*digest);
      }
    }
  }
  const StorageSupport& support = plan.storage_support;
  hasher.field("storage");
  hash_list(hasher, support.packages);
  hasher.field(std::to_string(support.files.size()));
  for (const auto& [path, content] : support.files) hasher.field(path).field(content);
  std::vector<std::string> parts;
  if (packages) parts.push_back(fmt::format("{} packages", packages));
  if (commands) parts.push_back(fmt::format("{} commands", commands));
  if (!support.empty()) parts.push_back(fmt::format("initramfs for {}", fmt::join(support.packages, " and ")));
  bool locale = std::any_of(plan.in_image_steps.begin(), plan.in_image_steps.end(),
                            [](const CustomizeStep& step) { return std::holds_alternative<SetLocale>(step.operation); });
  if (locale) parts.push_back("locale");
  std::string summary = fmt::format("{}", fmt::join(parts, ", "));
  return StagePlan{"customize", hasher.hex_digest(), "in-image: " + summary};
}

// The settings the guest's boot configuration depends on (crypttab and the
// initramfs), canonically.
std::string storage_key(const Recipe& recipe) {
  const StorageSection& s = recipe.storage;
  Hasher hasher;
  hasher.field(recipe.image.name.value).field(std::string(name_of(s.layout.value)));
  if (s.layout.value == StorageLayout::kLvm) {
    hasher.field(s.lvm.vg.value);
    for (const LvmVolume& volume : s.lvm.volumes) hasher.field(volume.name.value).field(volume.mountpoint.value);
  }
  if (s.luks.present.value) hasher.field("luks").field(s.luks.version.value).field(s.luks.name.value);
  if (s.dmcrypt.present.value)
    hasher.field("dmcrypt").field(s.dmcrypt.cipher.value).field(std::to_string(s.dmcrypt.key_size.value))
        .field(s.dmcrypt.hash.value).field(std::to_string(s.dmcrypt.sector_size.value)).field(s.dmcrypt.name.value);
  return hasher.hex_digest();
}

ImageIdentity identity_of(const Recipe& recipe) {
  std::string base = recipe.image.name.value + "/" + recipe.hash + "/";
  std::string storage = recipe.image.name.value + "/storage/" + storage_key(recipe) + "/";
  ImageIdentity id;
  id.root_filesystem = Uuid::from_name(base + "root-filesystem");
  id.root_partition = Uuid::from_name(storage + "root-partition");
  id.luks = Uuid::from_name(storage + "luks");
  for (const LvmVolume& volume : recipe.storage.lvm.volumes)
    id.volumes[volume.name.value] = volume.mountpoint.value == "/" ? id.root_filesystem
                                                                   : Uuid::from_name(base + "volume/" + volume.name.value);
  id.esp_partition = Uuid::from_name(base + "esp-partition");
  id.disk = Uuid::from_name(base + "disk");
  id.hash_seed = Uuid::from_name(base + "hash-seed");
  Uuid esp = Uuid::from_name(base + "esp-volume");
  id.esp_volume_id = (uint32_t{esp.bytes[0]} << 24) | (uint32_t{esp.bytes[1]} << 16) |
                     (uint32_t{esp.bytes[2]} << 8) | esp.bytes[3];
  return id;
}

bool names_kernel(const std::vector<std::string>& packages) {
  return std::any_of(packages.begin(), packages.end(),
                     [](const std::string& name) { return name.starts_with("linux-image-"); });
}

std::vector<std::string> bootstrap_packages(const Recipe& recipe, const Architecture& arch) {
  std::vector<std::string> packages = recipe.bootstrap.packages.value;
  bool esp = recipe.storage.layout.value != StorageLayout::kPlain;
  bool kernel_named = names_kernel(packages);
  for (const CustomizeStep& step : recipe.customize.steps)
    if (const auto* install = std::get_if<InstallPackages>(&step.operation))
      kernel_named = kernel_named || names_kernel(install->packages);
  if (!kernel_named && (esp || recipe.wants_output("kernel"))) packages.emplace_back(arch.kernel_package);
  bool has_loader = std::find(packages.begin(), packages.end(), "systemd-boot-efi") != packages.end();
  if (esp && arch.dpkg != host_architecture() && !has_loader) packages.emplace_back("systemd-boot-efi");
  return packages;
}

}  // namespace

bool is_builtin_locale(std::string_view locale) {
  return locale == "C" || locale == "POSIX" || locale == "C.UTF-8" || locale == "C.utf8";
}

bool runs_in_image(const CustomizeStep& step) {
  if (const auto* locale = std::get_if<SetLocale>(&step.operation))
    return !is_builtin_locale(locale->locale);
  return std::holds_alternative<InstallPackages>(step.operation) ||
         std::holds_alternative<RunCommand>(step.operation);
}

Result<Plan> make_plan(const Recipe& recipe, const PlanInputs& inputs) {
  Plan plan;
  plan.recipe = &recipe;
  plan.reproducible = inputs.source_date_epoch.has_value();
  plan.timestamp = inputs.source_date_epoch.value_or(inputs.now);
  bool imported = !recipe.bootstrap.from.value.empty();
  plan.arch = find_architecture(recipe.image.arch.value);
  if (!plan.arch)
    return fail_at(recipe.image.arch.where, "image.arch: kiln does not know the architecture \"{}\" ({})",
                   recipe.image.arch.value, architecture_choices());
  if (!imported) plan.bootstrap_packages = bootstrap_packages(recipe, *plan.arch);
  plan.mirror = recipe.bootstrap.mirror.value.empty() ? inputs.host_mirror : recipe.bootstrap.mirror.value;
  if (imported) {
    KILN_ASSIGN(plan.source, import_stage(recipe, inputs));
  } else {
    plan.source = bootstrap_stage(recipe, plan);
  }
  for (const CustomizeStep& step : recipe.customize.steps)
    (runs_in_image(step) ? plan.in_image_steps : plan.offline_steps).push_back(step);
  plan.identity = identity_of(recipe);
  KILN_ASSIGN(plan.disk, plan_disk_layout(recipe, plan.identity));
  plan.storage_support = storage_support(recipe, plan.identity);
  if (!plan.in_image_steps.empty() || !plan.storage_support.empty()) {
    KILN_ASSIGN(plan.in_image, in_image_stage(plan));
  }
  return plan;
}

}  // namespace kiln
