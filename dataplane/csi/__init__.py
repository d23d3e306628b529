"""The CSI driver ``data.kbl.io``: pods read their DataSet as a volume, local bytes first.

Node service only (Identity + Node, gRPC over a unix socket, the official CSI protobuf in
:mod:`.proto`), run beside the agent in its DaemonSet. Modules: :mod:`.settings` (knobs),
:mod:`.volumes` (what a publish asks for, what the volume shows), :mod:`.permitting`
(SubjectAccessReview of the pod's service account, the Event when refused), :mod:`.mounting`
(bind mounts and the mount table), :mod:`.fusing` (the FUSE daemon of one volume, reading
through the agent), :mod:`.publishing` (publish/unpublish/heal), :mod:`.serving` (gRPC),
:mod:`.commanding` (``kbl csi``), :mod:`.generating` (the protobuf compiled).
"""
