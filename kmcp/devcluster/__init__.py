"""A real, local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager).

Built from source through the Go module proxy on first use and cached, the way controller-runtime's envtest
uses real binaries. Tests prove Kubernetes behaviour against it; ``kmcp dev up`` runs it for the quick start.
"""
