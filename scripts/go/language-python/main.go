// Command pulumi-language-python is a small stand-in for Pulumi's Python
// language host.
//
// Why it exists: the upstream host lives in its own, untagged Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) and the
// Go module proxy reachable from this project's machines serves none of its
// versions (every pseudo-version answers "403 This module version is not
// available"), so it cannot be built from a registry. This host implements the
// part of pulumirpc.LanguageRuntimeServer (sdk/v3, same release as the CLI)
// that `pulumi preview/up/destroy/refresh/stack` need for a plain Python
// program:
//
//   - Run starts the project's Python (the `virtualenv` runtime option of
//     Pulumi.yaml, relative to the project root; else PULUMI_PYTHON_CMD, else
//     python3 on PATH) on the pulumi-language-python-exec script that sits next
//     to this executable, exactly like the upstream host does. The script
//     connects the pip `pulumi` SDK to the engine and resource monitor and runs
//     the program (`__main__.py`). Config reaches the SDK through
//     PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS (JSON), as upstream.
//   - GetRequiredPlugins/GetRequiredPackages report nothing: providers are
//     loaded on demand at the version the Python package asks for, from the
//     preinstalled PULUMI_HOME (automatic plugin acquisition is disabled).
//   - InstallDependencies is a no-op (the project manages its own venv).
//   - RunPlugin runs Python policy packs (kind "analyzer") as upstream does:
//     `python -u -m pulumi.policy <engine address> <pack directory>` with the
//     pack's own `virtualenv` (PulumiPolicy.yaml), streaming its output.
//   - About and GetProgramDependencies report the interpreter and the
//     installed distributions.
//
// Everything else (code generation, templates, Python resource/component
// plugins, debugging) answers Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// version is set with -ldflags "-X main.version=..." by scripts/toolchain.
var version = "3.259.0"

// execScriptName is the helper script that runs a program inside Python. As
// upstream, it is looked up next to this executable, not on PATH.
const execScriptName = "pulumi-language-python-exec"

// exitCodeErrorReported is what the exec script exits with after it has
// already reported the program's error to the engine (upstream uses 32 too).
const exitCodeErrorReported = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string

	// lifetime ends when the engine goes away; programs started by Run end with it.
	lifetime context.Context
	running  sync.WaitGroup
}

// exitWhenOrphaned cancels when the engine that started this host dies (a SIGKILL of
// `pulumi` gives no chance to say so): the host is then re-parented, so its parent pid
// changes. The gRPC health check notices too, but only after minutes.
func exitWhenOrphaned(ctx context.Context, cancel context.CancelFunc) {
	parent := os.Getppid()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if os.Getppid() != parent {
				cancel()
				return
			}
		}
	}
}

func main() {
	// The engine starts language plugins as `pulumi-language-python [flags]
	// <engine address>`. Upstream flags (-tracing=, -virtualenv=, -root=,
	// -toolchain=, -typechecker=, -v=, --logtostderr, ...) are accepted and
	// ignored; the last positional argument is the engine address.
	var engineAddress string
	for _, arg := range os.Args[1:] {
		if arg == "-version" || arg == "--version" {
			fmt.Println(version)
			return
		}
		if !strings.HasPrefix(arg, "-") {
			engineAddress = arg
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &host{engineAddress: engineAddress, lifetime: ctx}
	go exitWhenOrphaned(ctx, cancel)
	if engineAddress != "" {
		// Exit when the engine goes away, so that no host outlives it.
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "could not start health check: %v\n", err)
			os.Exit(1)
		}
	}

	stop := make(chan bool)
	go func() {
		<-ctx.Done()
		close(stop)
	}()

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Cancel:  stop,
		Options: rpcutil.TracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not start language host RPC server: %v\n", err)
		os.Exit(1)
	}

	// Plugin protocol: the first line on stdout is the port we listen on.
	fmt.Printf("%d\n", handle.Port)

	err = <-handle.Done
	// The server stops when the engine is gone: let Run kill and reap its program first.
	cancel()
	h.running.Wait()
	if err != nil {
		fmt.Fprintf(os.Stderr, "language host RPC stopped serving: %v\n", err)
		os.Exit(1)
	}
}

func (h *host) Handshake(ctx context.Context,
	req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *host) GetRequiredPlugins(ctx context.Context,
	req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(ctx context.Context,
	req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	msg := "pulumi-language-python (remote-kpo stand-in): not installing dependencies; " +
		"create the virtualenv named in Pulumi.yaml yourself\n"
	return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
}

func (h *host) RuntimeOptionsPrompts(ctx context.Context,
	req *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, _, err := pythonCommand(req.GetInfo(), "", os.Environ())
	if err != nil {
		return nil, err
	}
	// -I -S: no site-packages scan (the venv's .pth files) to read a version; a third of the
	// time of starting this interpreter with them (bench/README.md).
	out, err := exec.CommandContext(ctx, py, "-I", "-S", "-c",
		"import sys; print('%d.%d.%d' % sys.version_info[:3])").Output()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", py, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: py,
		Version:    strings.TrimSpace(string(out)),
		Metadata:   map[string]string{"host": "remote-kpo stand-in"},
	}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context,
	req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	py, _, err := pythonCommand(req.GetInfo(), "", os.Environ())
	if err != nil {
		return nil, err
	}
	script := "import json, importlib.metadata as m\n" +
		"print(json.dumps(sorted({(d.metadata['Name'], d.version) for d in m.distributions() if d.metadata['Name']})))"
	out, err := exec.CommandContext(ctx, py, "-c", script).Output()
	if err != nil {
		return nil, fmt.Errorf("listing distributions with %s: %w", py, err)
	}
	var pairs [][2]string
	if err := json.Unmarshal(out, &pairs); err != nil {
		return nil, fmt.Errorf("parsing distribution list: %w", err)
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pairs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p[0], Version: p[1]})
	}
	return resp, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating own executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	script := filepath.Join(filepath.Dir(self), execScriptName)
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("missing executor %s: %w", script, err)
	}

	py, env, err := pythonCommand(req.GetInfo(), req.GetPwd(), os.Environ())
	if err != nil {
		return nil, err
	}

	h.mu.Lock()
	engine := h.engineAddress
	h.mu.Unlock()

	program := req.GetProgram()
	if program == "" {
		program = "."
	}
	args := []string{"-u", script,
		"--monitor", req.GetMonitorAddress(),
		"--engine", engine,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	if req.GetOrganization() != "" {
		args = append(args, "--organization", req.GetOrganization())
	}
	if root := req.GetInfo().GetRootDirectory(); root != "" {
		args = append(args, "--root_directory", root)
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(nonNilMap(req.GetConfig()))
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(nonNilSlice(req.GetConfigSecretKeys()))
	if err != nil {
		return nil, err
	}
	env = append(env,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
		"PYTHONUNBUFFERED=1",
	)

	h.running.Add(1)
	defer h.running.Done()
	// Killed if the engine dies mid-run: no program outlives the `pulumi` that started it.
	cmd := exec.CommandContext(h.lifetime, py, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	err = cmd.Run()
	if err == nil {
		return &pulumirpc.RunResponse{}, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if exitErr.ExitCode() == exitCodeErrorReported {
			// The program's error has already been reported to the engine.
			return &pulumirpc.RunResponse{Bail: true}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
		}, nil
	}
	return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run %s): %v", py, err)}, nil
}

// RunPlugin runs a plugin implemented in Python. Only policy packs are
// supported; the engine reads the analyzer's gRPC port from the streamed stdout.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest,
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	if req.GetKind() != "analyzer" {
		return status.Errorf(codes.Unimplemented,
			"the remote-kpo stand-in Python language host runs only policy packs, not %q plugins", req.GetKind())
	}
	baseEnv := req.GetEnv()
	if len(baseEnv) == 0 {
		baseEnv = os.Environ()
	}
	py, env, err := pythonCommand(req.GetInfo(), req.GetPwd(), baseEnv)
	if err != nil {
		return err
	}
	args := []string{"-u", "-m", "pulumi.policy"}
	args = append(args, req.GetArgs()...)
	args = append(args, req.GetInfo().GetProgramDirectory())

	var mu sync.Mutex
	send := func(resp *pulumirpc.RunPluginResponse) error {
		mu.Lock()
		defer mu.Unlock()
		return server.Send(resp)
	}
	cmd := exec.CommandContext(server.Context(), py, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout = streamWriter(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}})
	})
	cmd.Stderr = streamWriter(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}})
	})
	code := int32(0)
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return fmt.Errorf("running policy pack with %s: %w", py, err)
		}
		code = int32(exitErr.ExitCode())
	}
	return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
}

// streamWriter adapts a send function to io.Writer (copying each chunk).
type streamWriter func([]byte) error

func (w streamWriter) Write(p []byte) (int, error) {
	if err := w(append([]byte(nil), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// pythonCommand picks the interpreter for a program and the environment to run
// it in. With a `virtualenv` runtime option it activates that virtualenv
// (relative paths are taken from the project root, where Pulumi.yaml is).
func pythonCommand(info *pulumirpc.ProgramInfo, pwd string, baseEnv []string) (string, []string, error) {
	env := append([]string(nil), baseEnv...)
	root := info.GetRootDirectory()
	if root == "" {
		root = pwd
	}
	var venv string
	if opts := info.GetOptions(); opts != nil {
		if v, ok := opts.GetFields()["virtualenv"]; ok {
			venv = v.GetStringValue()
		}
		if venv == "" {
			if tc, ok := opts.GetFields()["toolchain"]; ok {
				switch tc.GetStringValue() {
				case "uv", "poetry":
					venv = ".venv"
				}
			}
		}
	}
	if venv != "" {
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(root, venv)
		}
		py := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(py); err != nil {
			return "", nil, fmt.Errorf("The 'virtualenv' option in Pulumi.yaml is set to %q, but %s does not exist; "+
				"create it (python3 -m venv %s) and install the project's requirements", venv, py, venv)
		}
		env = withoutVar(env, "PYTHONHOME")
		env = withoutVar(env, "VIRTUAL_ENV")
		env = append(env, "VIRTUAL_ENV="+venv)
		path := filepath.Join(venv, "bin")
		for _, kv := range env {
			if strings.HasPrefix(kv, "PATH=") {
				path += string(os.PathListSeparator) + strings.TrimPrefix(kv, "PATH=")
			}
		}
		env = withoutVar(env, "PATH")
		env = append(env, "PATH="+path)
		return py, env, nil
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		py, err := exec.LookPath(cmd)
		if err != nil {
			return "", nil, fmt.Errorf("PULUMI_PYTHON_CMD=%s: %w", cmd, err)
		}
		return py, env, nil
	}
	for _, name := range []string{"python3", "python"} {
		if py, err := exec.LookPath(name); err == nil {
			return py, env, nil
		}
	}
	return "", nil, status.Error(codes.FailedPrecondition,
		"no Python interpreter found: set the `virtualenv` runtime option in Pulumi.yaml or put python3 on PATH")
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
