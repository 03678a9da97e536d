// Wrapper module for kwok-front (main.go), the fake nodes' kubelet endpoint in front of kwok
// (scripts/local-cluster): it serves exec with canned replies through the kubelet's streaming
// library. The versions follow scripts/go/kwok/go.mod (kwok v0.8.0's), so the module and build
// caches kwok filled serve this build too.
module remote-kpo.local/toolchain/kwok-front

go 1.26.0

require (
	k8s.io/cri-streaming v0.36.1
	k8s.io/utils v0.0.0-20260210185600-b8788abfbbc2
)

require (
	github.com/go-logr/logr v1.4.3 // indirect
	github.com/moby/spdystream v0.5.1 // indirect
	golang.org/x/net v0.51.0 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
	k8s.io/streaming v0.36.1 // indirect
)
