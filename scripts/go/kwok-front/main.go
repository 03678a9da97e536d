// kwok-front: the kubelet endpoint of the local cluster's fake nodes (scripts/local-cluster).
//
// The API server sends a node's pods/log and pods/exec requests to the port the node advertises.
// kwok v0.8 can serve exec only by running the command on this machine (its Exec/ClusterExec
// `local` target: pkg/kwok/server/debugging_exec.go runs cmd[0] with os/exec, and cmd[0] may be
// any absolute path), so a tenant allowed pods/exec would run host commands. This front takes that
// port instead: it answers exec with canned replies and runs nothing, forwards container logs to
// kwok, and refuses every other kubelet path (attach, port-forward, run, ...).
//
// A followed log ends when its container has terminated, as a kubelet's does. kwok's own never
// ends: it reads the log with k8s.io/cri-client's ReadLogs, which asks the runtime whether the
// container still runs, and kwok's runtime stub answers Unavailable, which ReadLogs takes for
// "running" (kwok pkg/kwok/server/debugging_logs.go runtimeServiceStub; cri-client
// pkg/logs/logs.go isContainerRunning). So this front reads the pod from the API server: a
// follow request for a container that has terminated is sent to kwok without follow (the whole
// log, then the end), and one for a running container is streamed until the pod says it has
// terminated (or the pod is gone). KPO's sync task with get_logs otherwise waits out its read
// timeout (5 minutes) after every task.
//
// Exec is served only in KPO's XCom sidecar, for the two commands KPO sends there
// (airflow.providers.cncf.kubernetes.utils.pod_manager, PodManager.extract_xcom_json and
// extract_xcom_kill):
//   - /bin/sh -c "if [ -s /airflow/xcom/return.json ]; then cat ...": the -xcom-result file;
//   - /bin/sh, then "kill -2 ..." (or its /proc fallback) on stdin: the sidecar "stops" (no output).
//
// The exec streams (SPDY or WebSocket, as the API server or client chooses) are served by the
// kubelet's own library, k8s.io/cri-streaming, as kwok does.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

const sidecar = "airflow-xcom-sidecar"

// refused is the exit code of a command the fake node does not serve (126: "cannot execute").
const refused = 126

type canned struct{ result []byte }

func refuse(errOut io.Writer, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if errOut != nil {
		fmt.Fprintln(errOut, msg)
	}
	return utilexec.CodeExitError{Err: errors.New(msg), Code: refused}
}

func (c canned) ExecInContainer(_ context.Context, name string, _ string, container string, cmd []string,
	in io.Reader, out, errOut io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	log.Printf("exec %s container %s: %q", name, container, cmd)
	if container != sidecar {
		return refuse(errOut, "local cluster (kwok fake node): exec is served only in the %s container", sidecar)
	}
	switch {
	case len(cmd) == 3 && cmd[0] == "/bin/sh" && cmd[1] == "-c" && strings.Contains(cmd[2], "cat /airflow/xcom/return.json"):
		_, err := out.Write(c.result)
		return err
	case len(cmd) == 1 && cmd[0] == "/bin/sh" && in != nil:
		line, _ := bufio.NewReader(in).ReadString('\n')
		if strings.HasPrefix(line, "kill -2 ") || strings.HasPrefix(line, "for f in /proc/") {
			return nil
		}
		return refuse(errOut, "local cluster (kwok fake node): only KPO's sidecar stop is served on stdin")
	}
	return refuse(errOut, "local cluster (kwok fake node): only KPO's XCom commands are served, not %q", cmd)
}

// container is the last path segment of /exec/{namespace}/{pod}[/{uid}]/{container}.
func execTarget(path string) (pod, uid, container string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/exec/"), "/")
	switch len(parts) {
	case 3:
		return parts[1] + "/" + parts[0], "", parts[2], true
	case 4:
		return parts[1] + "/" + parts[0], parts[2], parts[3], true
	}
	return "", "", "", false
}

// podsAPI reads pods from the API server, as the cluster admin (local-cluster's own token).
type podsAPI struct {
	server *url.URL
	token  string
	client *http.Client
}

// terminated: the pod is gone or done, or this container of it has terminated.
func (a podsAPI) terminated(ctx context.Context, namespace, pod, container string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		a.server.JoinPath("api/v1/namespaces", namespace, "pods", pod).String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return true, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("pod %s/%s: %s", namespace, pod, resp.Status)
	}
	var got struct {
		Status struct {
			Phase             string `json:"phase"`
			ContainerStatuses []struct {
				Name  string `json:"name"`
				State struct {
					Terminated *struct{} `json:"terminated"`
				} `json:"state"`
			} `json:"containerStatuses"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return false, err
	}
	if got.Status.Phase == "Succeeded" || got.Status.Phase == "Failed" {
		return true, nil
	}
	for _, status := range got.Status.ContainerStatuses {
		if status.Name == container {
			return status.State.Terminated != nil, nil
		}
	}
	return false, nil
}

// untilTerminated returns once the container has terminated (or ctx ends), checking every second.
func (a podsAPI) untilTerminated(ctx context.Context, namespace, pod, container string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		done, err := a.terminated(ctx, namespace, pod, container)
		if err != nil {
			log.Printf("log of %s/%s %s: %v", namespace, pod, container, err)
		}
		if done {
			return
		}
	}
}

// logTarget splits /containerLogs/{namespace}/{pod}/{container}.
func logTarget(path string) (namespace, pod, container string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

type logs struct {
	backend *url.URL
	proxy   *httputil.ReverseProxy
	pods    podsAPI
}

func (l logs) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	follow, _ := strconv.ParseBool(req.URL.Query().Get("follow"))
	namespace, pod, container, ok := logTarget(req.URL.Path)
	if !follow || !ok {
		l.proxy.ServeHTTP(w, req)
		return
	}
	done, err := l.pods.terminated(req.Context(), namespace, pod, container)
	if err != nil {
		log.Printf("log of %s/%s %s: %v", namespace, pod, container, err)
	}
	if done {
		query := req.URL.Query()
		query.Del("follow")
		req.URL.RawQuery = query.Encode()
		l.proxy.ServeHTTP(w, req)
		return
	}
	l.follow(w, req, namespace, pod, container)
}

// follow streams kwok's followed log until the container has terminated, then ends the response
// normally (the ReverseProxy would abort the connection when its request is cancelled).
func (l logs) follow(w http.ResponseWriter, req *http.Request, namespace, pod, container string) {
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	go func() {
		l.pods.untilTerminated(ctx, namespace, pod, container)
		cancel()
	}()
	target := *l.backend
	target.Path, target.RawQuery = req.URL.Path, req.URL.RawQuery
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for key, values := range resp.Header {
		w.Header()[key] = values
	}
	w.WriteHeader(resp.StatusCode)
	flusher := http.NewResponseController(w)
	buf := make([]byte, 32*1024)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = flusher.Flush()
		}
		if err != nil {
			return
		}
	}
}

func main() {
	listen := flag.String("listen", "", "address to serve the kubelet API on (TLS)")
	backend := flag.String("backend", "", "kwok's own server, for container logs (http://host:port)")
	cert := flag.String("tls-cert-file", "", "serving certificate")
	key := flag.String("tls-private-key-file", "", "serving key")
	xcom := flag.String("xcom-result", "", "file whose content answers KPO's XCom read")
	apiserver := flag.String("apiserver", "", "the API server (https://host:port), to read pods from")
	caFile := flag.String("ca-file", "", "the API server's CA certificate")
	tokenFile := flag.String("token-file", "", "a token allowed to get pods in every namespace")
	flag.Parse()
	result, err := os.ReadFile(*xcom)
	if err != nil {
		log.Fatal(err)
	}
	target, err := url.Parse(*backend)
	if err != nil || target.Host == "" {
		log.Fatalf("-backend: %q is not a URL", *backend)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1 // a followed log streams as kwok writes it
	apiURL, err := url.Parse(*apiserver)
	if err != nil || apiURL.Host == "" {
		log.Fatalf("-apiserver: %q is not a URL", *apiserver)
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		log.Fatalf("-ca-file: no certificate in %s", *caFile)
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Fatal(err)
	}
	pods := podsAPI{server: apiURL, token: strings.TrimSpace(string(token)), client: &http.Client{
		Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	executor := canned{result: result}

	mux := http.NewServeMux()
	mux.Handle("/containerLogs/", logs{backend: target, proxy: proxy, pods: pods})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/exec/", func(w http.ResponseWriter, req *http.Request) {
		pod, uid, container, ok := execTarget(req.URL.Path)
		if !ok {
			http.NotFound(w, req)
			return
		}
		opts, err := remotecommand.NewOptions(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		remotecommand.ServeExec(w, req, executor, pod, uid, container, req.URL.Query()["command"], opts,
			time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		http.Error(w, "not served by the local cluster's fake kubelet", http.StatusForbidden)
	})
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
