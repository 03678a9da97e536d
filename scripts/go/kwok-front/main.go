// kwok-front: the kubelet endpoint of the local cluster's fake nodes (scripts/local-cluster).
//
// The API server sends a node's pods/log and pods/exec requests to the port the node advertises.
// kwok v0.8 can serve exec only by running the command on this machine (its Exec/ClusterExec
// `local` target: pkg/kwok/server/debugging_exec.go runs cmd[0] with os/exec, and cmd[0] may be
// any absolute path), so a tenant allowed pods/exec would run host commands. This front takes that
// port instead: it answers exec with canned replies and runs nothing, forwards container logs to
// kwok, and refuses every other kubelet path (attach, port-forward, run, ...).
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
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
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

func main() {
	listen := flag.String("listen", "", "address to serve the kubelet API on (TLS)")
	backend := flag.String("backend", "", "kwok's own server, for container logs (http://host:port)")
	cert := flag.String("tls-cert-file", "", "serving certificate")
	key := flag.String("tls-private-key-file", "", "serving key")
	xcom := flag.String("xcom-result", "", "file whose content answers KPO's XCom read")
	flag.Parse()
	result, err := os.ReadFile(*xcom)
	if err != nil {
		log.Fatal(err)
	}
	target, err := url.Parse(*backend)
	if err != nil || target.Host == "" {
		log.Fatalf("-backend: %q is not a URL", *backend)
	}
	logs := httputil.NewSingleHostReverseProxy(target)
	logs.FlushInterval = -1 // a followed log streams as kwok writes it
	executor := canned{result: result}

	mux := http.NewServeMux()
	mux.Handle("/containerLogs/", logs)
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
