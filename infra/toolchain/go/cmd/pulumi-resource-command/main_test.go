package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

const urn = "urn:pulumi:dev::p::command:local:Command::m1"

func props(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := plugin.MarshalProperties(m, marshal)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDiff(t *testing.T) {
	p := &commandProvider{cancels: map[int]context.CancelFunc{}}
	old := resource.PropertyMap{
		"create": resource.NewStringProperty("pgstack apply m1"), "stdout": resource.NewStringProperty("ok"),
		"triggers": resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("sum1")}),
	}
	diff := func(news resource.PropertyMap) *pulumirpc.DiffResponse {
		resp, err := p.Diff(context.Background(), &pulumirpc.DiffRequest{Urn: urn, Olds: props(t, old), News: props(t, news)})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	same := old.Copy()
	delete(same, "stdout")
	if r := diff(same); r.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Errorf("unchanged inputs: got %v", r.Changes)
	}

	env := same.Copy()
	env["environment"] = resource.NewObjectProperty(resource.PropertyMap{
		"DATABASE_URL": resource.MakeSecret(resource.NewStringProperty("postgres://x")),
	})
	if r := diff(env); r.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(r.Replaces) != 0 {
		t.Errorf("new environment should update in place: %v", r)
	}

	trig := same.Copy()
	trig["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("sum2")})
	if r := diff(trig); len(r.Replaces) != 1 || r.Replaces[0] != "triggers" {
		t.Errorf("changed triggers should replace: %v", r)
	}
}

func TestCreateRunsOnlyOutsidePreviewAndKeepsSecretsOut(t *testing.T) {
	p := &commandProvider{cancels: map[int]context.CancelFunc{}}
	inputs := resource.PropertyMap{
		"create": resource.NewStringProperty(`echo "url=$DATABASE_URL"`),
		"environment": resource.NewObjectProperty(resource.PropertyMap{
			"DATABASE_URL": resource.MakeSecret(resource.NewStringProperty("postgres://u:hunter2@h/db")),
		}),
	}
	for _, preview := range []bool{true, false} {
		resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: urn, Properties: props(t, inputs), Preview: preview})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := plugin.UnmarshalProperties(resp.Properties, marshal)
		stdout := out["stdout"]
		switch {
		case preview && !stdout.IsComputed():
			t.Errorf("preview ran the command: %v", stdout)
		case !preview && (!stdout.IsSecret() || stdout.SecretValue().Element.StringValue() != "url=postgres://u:hunter2@h/db"):
			t.Errorf("stdout should be the secret output, got %v", stdout)
		}
	}

	inputs["create"] = resource.NewStringProperty(`echo "cannot reach $DATABASE_URL" >&2; exit 2`)
	_, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: urn, Properties: props(t, inputs)})
	if err == nil || !strings.Contains(err.Error(), "cannot reach [secret]") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("failure should show stderr with secrets redacted, got %v", err)
	}
}
