package deployments_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"

	"github.com/strata-backup/strata/internal/config"
)

// k8sDecoder decodes YAML strictly into the registered API types: an unknown
// or duplicated field, a field of the wrong case or type, or a kind not
// registered here is an error.
func k8sDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	sch := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(sch); err != nil {
			t.Fatal(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, sch, sch, kjson.SerializerOptions{Yaml: true, Strict: true})
}

var reDocSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits multi-document YAML, dropping documents of only comments.
func splitDocs(data string) []string {
	var docs []string
	for _, d := range reDocSep.Split(data, -1) {
		for _, ln := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(ln); l != "" && !strings.HasPrefix(l, "#") {
				docs = append(docs, d)
				break
			}
		}
	}
	return docs
}

// decodeManifests strictly decodes every document of the file.
func decodeManifests(t *testing.T, dec runtime.Decoder, name, data string) ([]runtime.Object, error) {
	t.Helper()
	var objs []runtime.Object
	for i, d := range splitDocs(data) {
		obj, _, err := dec.Decode([]byte(d), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// manifests decodes every manifest of kubernetes/ (all but the
// kustomization), which kustomization.yaml must list.
func manifests(t *testing.T) map[string][]runtime.Object {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	readYAML(t, "kubernetes/kustomization.yaml", &k)
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
	}
	dec := k8sDecoder(t)
	out := map[string][]runtime.Object{}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		if !listed[base] {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
		delete(listed, base)
		objs, err := decodeManifests(t, dec, f, string(readFile(t, f)))
		if err != nil {
			t.Errorf("strict decoding: %v", err)
			continue
		}
		out[base] = objs
	}
	for r := range listed {
		t.Errorf("kustomization.yaml lists %s, which does not exist", r)
	}
	return out
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	ms := manifests(t)
	n := 0
	for _, objs := range ms {
		n += len(objs)
	}
	if n < 10 {
		t.Errorf("decoded only %d objects", n)
	}
}

// TestKubernetesStrictDecodingCatchesErrors plants faults in a real
// manifest: each must fail the decoding.
func TestKubernetesStrictDecodingCatchesErrors(t *testing.T) {
	dec := k8sDecoder(t)
	orig := string(readFile(t, "kubernetes/worker-deployment.yaml"))
	if _, err := decodeManifests(t, dec, "orig", orig); err != nil {
		t.Fatalf("the unchanged manifest does not decode: %v", err)
	}
	const args = "          args: [\"worker\", \"--metrics-listen\", \":9464\"]\n"
	for name, c := range map[string]struct{ old, new, want string }{
		"unknown field":           {args, args + "          bogusField: 1\n", "bogusField"},
		"field of the wrong case": {args, args + "          ImagePullPolicy: Always\n", "ImagePullPolicy"},
		"duplicated field":        {args, args + "          args: [\"agent\"]\n", "args"},
		"wrong type":              {"  replicas: 2\n", "  replicas: two\n", "replicas"},
		"unknown kind":            {"kind: PodDisruptionBudget\n", "kind: PodDisruptionBudgett\n", "PodDisruptionBudgett"},
	} {
		bad := strings.Replace(orig, c.old, c.new, 1)
		if bad == orig {
			t.Fatalf("%s: %q not found in worker-deployment.yaml", name, c.old)
		}
		_, err := decodeManifests(t, dec, name, bad)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: decoding gave %v, want an error naming %s", name, err, c.want)
		}
	}
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func findMount(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// checkMetricsContainer: the container serves /metrics on the port of its
// pod's prometheus.io/port annotation, named, with probes on it.
func checkMetricsContainer(t *testing.T, what string, pod corev1.PodTemplateSpec, c *corev1.Container, port int32) {
	t.Helper()
	a := pod.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(port)) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: pod annotations %v, want prometheus.io/scrape, port %d and path /metrics", what, a, port)
	}
	if !strings.Contains(strings.Join(c.Args, " "), fmt.Sprintf("--metrics-listen :%d", port)) {
		t.Errorf("%s: args %v do not serve /metrics on :%d", what, c.Args, port)
	}
	var portName string
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			portName = p.Name
		}
	}
	if portName == "" {
		t.Fatalf("%s: no containerPort %d", what, port)
	}
	for name, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		switch {
		case pr == nil:
			t.Errorf("%s: no %s", what, name)
		case pr.HTTPGet != nil && pr.HTTPGet.Port.String() == portName && pr.HTTPGet.Path == "/metrics":
		case pr.TCPSocket != nil && pr.TCPSocket.Port.String() == portName:
		default:
			t.Errorf("%s: %s does not probe port %s", what, name, portName)
		}
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: no memory request and limit", what)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want a read-only root filesystem and no privilege escalation", what)
	}
}

func TestKubernetesWorkerAndAgentSidecar(t *testing.T) {
	ms := manifests(t)
	var worker *appsv1.Deployment
	var sts *appsv1.StatefulSet
	var cms []*corev1.ConfigMap
	for _, objs := range ms {
		for _, o := range objs {
			switch o := o.(type) {
			case *appsv1.Deployment:
				if o.Name == "strata-worker" {
					worker = o
				}
			case *appsv1.StatefulSet:
				if o.Name == "mariadb" {
					sts = o
				}
			case *corev1.ConfigMap:
				cms = append(cms, o)
			}
		}
	}
	if worker == nil || sts == nil {
		t.Fatalf("no Deployment strata-worker or StatefulSet mariadb")
	}
	wc := findContainer(worker.Spec.Template.Spec.Containers, "worker")
	if wc == nil {
		t.Fatal("strata-worker has no container worker")
	}
	checkMetricsContainer(t, "worker", worker.Spec.Template, wc, 9464)

	pod := sts.Spec.Template.Spec
	db, agent := findContainer(pod.Containers, "mariadb"), findContainer(pod.Containers, "strata-agent")
	if db == nil || agent == nil {
		t.Fatalf("StatefulSet mariadb: want containers mariadb and strata-agent")
	}
	checkMetricsContainer(t, "agent sidecar", sts.Spec.Template, agent, 9465)
	// The shared datadir (read-only for the agent, same path) and socket.
	dm, am := findMount(db, "data"), findMount(agent, "data")
	if dm == nil || am == nil || dm.MountPath != am.MountPath || !am.ReadOnly || dm.ReadOnly {
		t.Errorf("data volume: mariadb %+v, agent %+v: want the same path, read-only for the agent", dm, am)
	}
	ds, as := findMount(db, "run-mysqld"), findMount(agent, "run-mysqld")
	if ds == nil || as == nil || ds.MountPath != "/run/mysqld" || as.MountPath != "/run/mysqld" {
		t.Errorf("socket volume run-mysqld: mariadb %+v, agent %+v: want both at /run/mysqld", ds, as)
	}
	// Every volume a container mounts is declared, or is a claim template.
	vols := map[string]bool{}
	for _, v := range pod.Volumes {
		vols[v.Name] = true
	}
	for _, c := range sts.Spec.VolumeClaimTemplates {
		vols[c.Name] = true
	}
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("container %s mounts undeclared volume %s", c.Name, m.Name)
			}
		}
	}
	// The agent's password comes from the Secret; the worker has none.
	for _, e := range wc.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("the worker gets secret %s", e.Name)
		}
	}

	// strata.yaml of the ConfigMap passes Strata's config validation, and its
	// instance connects through the shared socket as the data path matches.
	var cfg *config.Config
	for _, cm := range cms {
		if s, ok := cm.Data["strata.yaml"]; ok {
			c, err := config.Parse([]byte(s))
			if err != nil {
				t.Fatalf("ConfigMap %s, strata.yaml: %v", cm.Name, err)
			}
			cfg = c
		}
	}
	if cfg == nil {
		t.Fatal("no ConfigMap with strata.yaml")
	}
	in := cfg.Instances[0]
	if in.Connect.Socket != as.MountPath+"/mysqld.sock" || in.Datadir != am.MountPath {
		t.Errorf("instance %s: socket %q, datadir %q; want %s/mysqld.sock and %s", in.ID, in.Connect.Socket, in.Datadir, as.MountPath, am.MountPath)
	}
}

func TestComposeStrataConfig(t *testing.T) {
	if _, err := config.Parse(readFile(t, "compose/strata.yaml")); err != nil {
		t.Fatalf("compose/strata.yaml: %v", err)
	}
}
