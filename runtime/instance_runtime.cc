#include "runtime/instance_runtime.h"

#include "base/reporter.h"
#include "runtime/instance_manager.h"
#include "runtime/libvirt_exec.h"
#include "runtime/libvirt_instances.h"

namespace kiln {
namespace {

class OwnRuntime : public InstanceRuntime {
 public:
  Result<> request(const std::string& name, const std::string& verb, std::chrono::seconds wait) override {
    KILN_TRY(kiln::request(store_, name, verb));
    if (wait.count() > 0) return wait_gone(store_, name, wait);
    return {};
  }
  Result<> destroy(const std::string& name) override { return destroy_with_kept_log(store_, name); }
  Result<> console(const std::string& name) override { return attach_console(store_, name, true); }
  Result<> save(const std::string& name, const std::string& file) override {
    return save_instance(store_, name, file);
  }
  Result<std::string> restore(const std::string& file) override {
    Reporter reporter(Reporter::detect(false));
    KILN_ASSIGN(BootOutcome outcome, restore_instance(store_, file, reporter));
    return fmt::format("{} restored (id {})", outcome.record.spec.name, outcome.record.spec.id);
  }
  std::unique_ptr<ExecTarget> exec_target() override { return std::make_unique<OwnExecTarget>(store_); }

 private:
  InstanceStore store_ = InstanceStore::open();
};

class LibvirtRuntime : public InstanceRuntime {
 public:
  explicit LibvirtRuntime(std::string uri) : uri_(std::move(uri)) {}
  Result<> request(const std::string& name, const std::string& verb, std::chrono::seconds wait) override {
    KILN_TRY(libvirt_instance_verb(uri_, name, verb));
    if (wait.count() > 0) return wait_libvirt_stopped(uri_, name, wait);
    return {};
  }
  Result<> destroy(const std::string& name) override { return libvirt_instance_verb(uri_, name, "destroy"); }
  Result<> console(const std::string& name) override { return attach_libvirt_console(uri_, name, true); }
  Result<> save(const std::string& name, const std::string& file) override {
    return save_libvirt_instance(uri_, name, file);
  }
  Result<std::string> restore(const std::string& file) override {
    KILN_ASSIGN(std::string name, restore_libvirt_instance(uri_, file));
    return fmt::format("{} restored on {}", name, uri_);
  }
  std::unique_ptr<ExecTarget> exec_target() override { return std::make_unique<LibvirtExecTarget>(uri_); }

 private:
  std::string uri_;
};

}  // namespace

std::unique_ptr<InstanceRuntime> instance_runtime(const std::string& connect) {
  if (std::string uri = connect_uri(connect); !uri.empty()) return std::make_unique<LibvirtRuntime>(uri);
  return std::make_unique<OwnRuntime>();
}

}  // namespace kiln
