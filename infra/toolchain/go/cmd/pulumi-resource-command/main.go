// pulumi-resource-command: pgstack's build of the `command` provider for
// `command:local:Command` and `command:local:run`, the part of @pulumi/command that
// pgstack uses. Why our own: the official provider's Go module
// (github.com/pulumi/pulumi-command/provider) is untagged and the module proxy
// reachable here serves no version of it, so it cannot be built from Go modules.
//
// Semantics follow the official provider:
//   - nothing runs during preview; outputs (stdout, stderr) are unknown then;
//   - a change to `triggers` replaces the resource, any other input change runs
//     `update` (or `create` again when there is no `update`);
//   - `delete` runs on delete; update/delete see the previous output in
//     PULUMI_COMMAND_STDOUT / PULUMI_COMMAND_STDERR;
//   - trailing newline of stdout/stderr is trimmed.
//
// Secret handling (stricter than upstream): when any input is secret, stdout and
// stderr are stored as secrets, and every secret string is redacted from
// logged lines and error messages.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/pkg/v3/resource/provider"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is set with -ldflags "-X main.version=..." to the @pulumi/command version,
// because the engine matches the plugin version the SDK asks for.
var version = "0.0.0-dev"

const (
	commandType = "command:local:Command"
	runToken    = "command:local:run"
)

// inputKeys are the inputs of command:local:Command in @pulumi/command; everything
// else in the state is an output.
var inputKeys = []resource.PropertyKey{
	"archivePaths", "assetPaths", "create", "delete", "dir", "environment",
	"interpreter", "stdin", "triggers", "update",
}

var marshal = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient

	mu       sync.Mutex
	cancels  map[int]context.CancelFunc
	nextID   int
	canceled bool
}

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &commandProvider{host: host, cancels: map[int]context.CancelFunc{}}, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":"command","version":%q}`, version)}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.canceled = true
	for _, cancel := range p.cancels {
		cancel()
	}
	return &emptypb.Empty{}, nil
}

func checkType(urn string) error {
	if t := string(resource.URN(urn).Type()); t != commandType {
		return status.Errorf(codes.Unimplemented,
			"%s is not supported by pgstack's command provider (only %s and %s are)", t, commandType, runToken)
	}
	return nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	for _, k := range []resource.PropertyKey{"assetPaths", "archivePaths"} {
		if v, ok := news[k]; ok && !v.IsNull() {
			failures = append(failures, &pulumirpc.CheckFailure{
				Property: string(k), Reason: "not supported by pgstack's command provider",
			})
		}
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), marshal)
	if err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_NONE, DetailedDiff: map[string]*pulumirpc.PropertyDiff{}, HasDetailedDiff: true,
	}
	for _, k := range inputKeys {
		o, n := olds[k], news[k]
		if o.IsNull() && n.IsNull() || o.DeepEquals(n) {
			continue
		}
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case k == "triggers":
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
			resp.Replaces = append(resp.Replaces, string(k))
		case o.IsNull():
			kind = pulumirpc.PropertyDiff_ADD
		case n.IsNull():
			kind = pulumirpc.PropertyDiff_DELETE
		}
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
		resp.Diffs = append(resp.Diffs, string(k))
		resp.DetailedDiff[string(k)] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return resp, nil
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	inputs, err := plugin.UnmarshalProperties(req.GetProperties(), marshal)
	if err != nil {
		return nil, err
	}
	id := "" // the engine expects no ID from a preview
	if !req.GetPreview() {
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		id = resource.URN(req.GetUrn()).Name() + "-" + hex.EncodeToString(suffix)
	}
	props, err := p.runLifecycle(ctx, req.GetUrn(), inputs, "create", nil, req.GetPreview(), req.GetTimeout())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), marshal)
	if err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	step := "update"
	if news["update"].IsNull() {
		step = "create"
	}
	props, err := p.runLifecycle(ctx, req.GetUrn(), news, step, olds, req.GetPreview(), req.GetTimeout())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	state, err := plugin.UnmarshalProperties(req.GetProperties(), marshal)
	if err != nil {
		return nil, err
	}
	if cmd := plain(state["delete"]); cmd != "" {
		if _, _, err := p.run(ctx, req.GetUrn(), cmd, state, state, req.GetTimeout()); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	state, err := plugin.UnmarshalProperties(req.GetProperties(), marshal)
	if err != nil {
		return nil, err
	}
	inputs := resource.PropertyMap{}
	for _, k := range inputKeys {
		if v, ok := state[k]; ok {
			inputs[k] = v
		}
	}
	in, err := plugin.MarshalProperties(inputs, marshal)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: in}, nil
}

func (p *commandProvider) Invoke(ctx context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	if req.GetTok() != runToken {
		return nil, status.Errorf(codes.Unimplemented,
			"%s is not supported by pgstack's command provider (only %s and %s are)", req.GetTok(), commandType, runToken)
	}
	args, err := plugin.UnmarshalProperties(req.GetArgs(), marshal)
	if err != nil {
		return nil, err
	}
	stdout, stderr, err := p.run(ctx, "", plain(args["command"]), args, nil, 0)
	if err != nil {
		return nil, err
	}
	args["stdout"], args["stderr"] = p.output(stdout, args), p.output(stderr, args)
	ret, err := plugin.MarshalProperties(args, marshal)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.InvokeResponse{Return: ret}, nil
}

// runLifecycle runs the `step` command of inputs (unless previewing) and returns the
// new state: the inputs plus stdout and stderr.
func (p *commandProvider) runLifecycle(ctx context.Context, urn string, inputs resource.PropertyMap, step string,
	olds resource.PropertyMap, preview bool, timeout float64,
) (*structpb.Struct, error) {
	state := inputs.Copy()
	cmd := inputs[resource.PropertyKey(step)]
	switch {
	case preview:
		state["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		state["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	case cmd.IsNull():
		state["stdout"], state["stderr"] = p.output("", inputs), p.output("", inputs)
	default:
		stdout, stderr, err := p.run(ctx, urn, plain(cmd), inputs, olds, timeout)
		if err != nil {
			return nil, err
		}
		state["stdout"], state["stderr"] = p.output(stdout, inputs), p.output(stderr, inputs)
	}
	return plugin.MarshalProperties(state, marshal)
}

func (p *commandProvider) output(s string, inputs resource.PropertyMap) resource.PropertyValue {
	v := resource.NewStringProperty(s)
	if resource.NewObjectProperty(inputs).ContainsSecrets() {
		return resource.MakeSecret(v)
	}
	return v
}

// run executes command with the interpreter, dir, environment and stdin of args.
func (p *commandProvider) run(ctx context.Context, urn, command string, args, olds resource.PropertyMap,
	timeout float64,
) (string, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
	}
	defer cancel()
	untrack, ok := p.track(cancel)
	if !ok {
		return "", "", status.Error(codes.Canceled, "canceled")
	}
	defer untrack()

	interpreter := []string{"/bin/sh", "-c"}
	if v := args["interpreter"]; v.IsArray() && len(v.ArrayValue()) > 0 {
		interpreter = nil
		for _, e := range v.ArrayValue() {
			interpreter = append(interpreter, plain(e))
		}
	}
	cmd := exec.CommandContext(ctx, interpreter[0], append(interpreter[1:], command)...)
	cmd.Dir = plain(args["dir"])
	cmd.Env = os.Environ()
	if env := unsecret(args["environment"]); env.IsObject() {
		keys := env.ObjectValue().StableKeys()
		for _, k := range keys {
			cmd.Env = append(cmd.Env, string(k)+"="+plain(env.ObjectValue()[k]))
		}
	}
	if olds != nil {
		cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDOUT="+plain(olds["stdout"]),
			"PULUMI_COMMAND_STDERR="+plain(olds["stderr"]))
	}
	if stdin := plain(args["stdin"]); stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}

	redact := redactor(args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &lineLogger{buf: &stdout, log: p.logFunc(ctx, urn, redact)}
	cmd.Stderr = &lineLogger{buf: &stderr, log: p.logFunc(ctx, urn, redact)}
	err := cmd.Run()
	cmd.Stdout.(*lineLogger).flush()
	cmd.Stderr.(*lineLogger).flush()
	out := strings.TrimSuffix(stdout.String(), "\n")
	errOut := strings.TrimSuffix(stderr.String(), "\n")
	if err != nil {
		return "", "", fmt.Errorf("%s: running %q:\nStdout:\n%s\nStderr:\n%s",
			err, redact(command), redact(out), redact(errOut))
	}
	return out, errOut, nil
}

// track registers cancel so that Cancel (the engine's Ctrl-C) stops running commands.
func (p *commandProvider) track(cancel context.CancelFunc) (untrack func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.canceled {
		return nil, false
	}
	p.nextID++
	id := p.nextID
	p.cancels[id] = cancel
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.cancels, id)
	}, true
}

func (p *commandProvider) logFunc(ctx context.Context, urn string, redact func(string) string) func(string) {
	return func(line string) {
		if p.host != nil && urn != "" {
			_ = p.host.Log(ctx, diag.Info, resource.URN(urn), redact(line))
		}
	}
}

// redactor replaces every secret string found in args (longest first) with "[secret]".
func redactor(args resource.PropertyMap) func(string) string {
	var secrets []string
	var walk func(v resource.PropertyValue, secret bool)
	walk = func(v resource.PropertyValue, secret bool) {
		switch {
		case v.IsSecret():
			walk(v.SecretValue().Element, true)
		case v.IsString() && secret && v.StringValue() != "":
			secrets = append(secrets, v.StringValue())
		case v.IsArray():
			for _, e := range v.ArrayValue() {
				walk(e, secret)
			}
		case v.IsObject():
			for _, e := range v.ObjectValue() {
				walk(e, secret)
			}
		}
	}
	walk(resource.NewObjectProperty(args), false)
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	return func(s string) string {
		for _, secret := range secrets {
			s = strings.ReplaceAll(s, secret, "[secret]")
		}
		return s
	}
}

// unsecret strips secret wrappers at any depth; inputs arrive wrapped since we accept secrets.
func unsecret(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return unsecret(v.SecretValue().Element)
	case v.IsObject():
		m := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			m[k] = unsecret(e)
		}
		return resource.NewObjectProperty(m)
	case v.IsArray():
		var a []resource.PropertyValue
		for _, e := range v.ArrayValue() {
			a = append(a, unsecret(e))
		}
		return resource.NewArrayProperty(a)
	}
	return v
}

func plain(v resource.PropertyValue) string {
	v = unsecret(v)
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

// lineLogger buffers output and forwards complete lines to log.
type lineLogger struct {
	buf     *bytes.Buffer
	log     func(string)
	partial []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.buf.Write(b)
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.log(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineLogger) flush() {
	if len(l.partial) > 0 {
		l.log(string(l.partial))
		l.partial = nil
	}
}
