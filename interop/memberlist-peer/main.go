// Command memberlist-peer runs one HashiCorp memberlist node so Disperse's
// wire codec can be tested against the real Go implementation.
//
// It prints JSON lines on stdout: a "ready" line with the bound address once
// the node is up, then (with -events) one line per membership event or user
// message.  Logs go to stderr.
//
// In member events, "state" is always 0 (alive) with Debian's memberlist
// 0.2.2: it keeps a member's state in its private nodeState and never updates
// the Node.State it hands to NotifyLeave, so a "leave" event does not tell a
// member that left from one declared dead.
//
// With -golden it instead prints reference encodings produced by Go's own
// msgpack codec and compress/lzw, for use as test fixtures, and exits.
//
// Build offline against Debian's packages:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o build/memberlist-peer ./interop/memberlist-peer
package main

import (
	"bufio"
	"bytes"
	"compress/lzw"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
	"github.com/hashicorp/memberlist"
)

// The label header memberlist (from 0.3 on) puts before labelled packets and
// streams: a marker byte, the label's length, the label.  Debian ships
// memberlist 0.2.2, which predates labels, so this peer adds and checks the
// header in its transport, where newer memberlist versions do it too.
const labelMarker = 244

var stdout = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(v map[string]interface{}) {
	stdout.Lock()
	defer stdout.Unlock()
	if err := stdout.enc.Encode(v); err != nil {
		log.Printf("[ERR] peer: cannot write event: %v", err)
	}
}

func nodeEvent(kind string, n *memberlist.Node) map[string]interface{} {
	return map[string]interface{}{
		"event": kind,
		"name":  n.Name,
		"addr":  n.Addr.String(),
		"port":  n.Port,
		"meta":  base64.StdEncoding.EncodeToString(n.Meta),
		"state": int(n.State),
		"vsn":   []int{int(n.PMin), int(n.PMax), int(n.PCur), int(n.DMin), int(n.DMax), int(n.DCur)},
	}
}

// events reports membership changes as JSON lines when enabled.
type events struct{ enabled bool }

func (e events) NotifyJoin(n *memberlist.Node) {
	if e.enabled {
		emit(nodeEvent("join", n))
	}
}

func (e events) NotifyLeave(n *memberlist.Node) {
	if e.enabled {
		emit(nodeEvent("leave", n))
	}
}

func (e events) NotifyUpdate(n *memberlist.Node) {
	if e.enabled {
		emit(nodeEvent("update", n))
	}
}

// delegate supplies metadata and user state, and reports what peers send.
type delegate struct {
	meta      []byte
	userState []byte
	report    bool
}

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return d.meta[:limit]
	}
	return d.meta
}

func (d *delegate) NotifyMsg(payload []byte) {
	if d.report {
		emit(map[string]interface{}{
			"event":   "user",
			"payload": base64.StdEncoding.EncodeToString(payload),
		})
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

func (d *delegate) LocalState(join bool) []byte { return d.userState }

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if d.report {
		emit(map[string]interface{}{
			"event":     "remote-state",
			"join":      join,
			"userState": base64.StdEncoding.EncodeToString(buf),
		})
	}
}

// labelTransport wraps the network transport to add the label header to
// everything sent and to require it on everything received.
type labelTransport struct {
	*memberlist.NetTransport
	label    string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
}

func newLabelTransport(inner *memberlist.NetTransport, label string) *labelTransport {
	t := &labelTransport{
		NetTransport: inner,
		label:        label,
		packetCh:     make(chan *memberlist.Packet),
		streamCh:     make(chan net.Conn),
	}
	go t.filterPackets()
	go t.filterStreams()
	return t
}

func (t *labelTransport) header() []byte {
	return append([]byte{labelMarker, byte(len(t.label))}, t.label...)
}

func (t *labelTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.NetTransport.WriteTo(append(t.header(), b...), addr)
}

func (t *labelTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *labelTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(t.header()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (t *labelTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *labelTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *labelTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// splitLabel separates a packet's label header from its payload.
func splitLabel(buf []byte) (string, []byte) {
	if len(buf) < 3 || buf[0] != labelMarker || buf[1] == 0 || len(buf) < 2+int(buf[1]) {
		return "", buf
	}
	size := int(buf[1])
	return string(buf[2 : 2+size]), buf[2+size:]
}

func (t *labelTransport) filterPackets() {
	for p := range t.NetTransport.PacketCh() {
		label, rest := splitLabel(p.Buf)
		if label != t.label {
			log.Printf("[WARN] peer: dropping packet labelled %q from %s", label, p.From)
			continue
		}
		p.Buf = rest
		t.packetCh <- p
	}
}

// bufferedConn lets memberlist read what the label check peeked at.
type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.reader.Read(b) }

func (t *labelTransport) filterStreams() {
	for conn := range t.NetTransport.StreamCh() {
		go func(conn net.Conn) {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			reader := bufio.NewReader(conn)
			head, err := reader.Peek(2)
			if err != nil || head[0] != labelMarker || head[1] == 0 {
				log.Printf("[WARN] peer: dropping unlabelled stream from %s", conn.RemoteAddr())
				conn.Close()
				return
			}
			full := make([]byte, 2+int(head[1]))
			if _, err := io.ReadFull(reader, full); err != nil || string(full[2:]) != t.label {
				log.Printf("[WARN] peer: dropping stream with wrong label from %s", conn.RemoteAddr())
				conn.Close()
				return
			}
			conn.SetReadDeadline(time.Time{})
			t.streamCh <- &bufferedConn{Conn: conn, reader: reader}
		}(conn)
	}
}

func main() {
	bind := flag.String("bind", "127.0.0.1", "address to bind UDP and TCP to")
	port := flag.Int("port", 0, "port to bind (0: let the OS choose)")
	name := flag.String("name", "go-peer", "node name")
	join := flag.String("join", "", "comma-separated host:port list to join")
	key := flag.String("key", "", "base64 AES key; enables encryption")
	label := flag.String("label", "", "label required on all packets and streams")
	printEvents := flag.Bool("events", false, "print member events as JSON lines on stdout")
	compress := flag.Bool("compress", true, "compress what we send (memberlist's default)")
	meta := flag.String("meta", "", "node metadata")
	userState := flag.String("user-state", "", "user state sent in push/pull exchanges")
	protocol := flag.Int("protocol", int(memberlist.ProtocolVersion2Compatible), "protocol version to speak")
	pushPull := flag.Duration("push-pull-interval", 0, "time between periodic push/pull exchanges (0: memberlist's local default, 15s)")
	golden := flag.Bool("golden", false, "print reference encodings as JSON and exit")
	flag.Parse()

	if *golden {
		printGolden()
		return
	}

	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	log.SetOutput(os.Stderr)

	conf := memberlist.DefaultLocalConfig()
	conf.Name = *name
	conf.BindAddr = *bind
	conf.BindPort = *port
	conf.AdvertiseAddr = *bind
	conf.EnableCompression = *compress
	conf.ProtocolVersion = uint8(*protocol)
	conf.Logger = logger
	conf.Events = events{enabled: *printEvents}
	conf.Delegate = &delegate{meta: []byte(*meta), userState: []byte(*userState), report: *printEvents}
	if *pushPull > 0 {
		conf.PushPullInterval = *pushPull
	}

	if *key != "" {
		secret, err := base64.StdEncoding.DecodeString(*key)
		if err != nil {
			logger.Fatalf("[ERR] peer: bad -key: %v", err)
		}
		conf.SecretKey = secret
	}

	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{*bind},
		BindPort:  *port,
		Logger:    logger,
	})
	if err != nil {
		logger.Fatalf("[ERR] peer: cannot bind: %v", err)
	}
	if *port == 0 {
		conf.BindPort = nt.GetAutoBindPort()
	}
	conf.AdvertisePort = conf.BindPort
	if *label != "" {
		if len(*label) > 255 {
			logger.Fatalf("[ERR] peer: label longer than 255 bytes")
		}
		conf.Transport = newLabelTransport(nt, *label)
	} else {
		conf.Transport = nt
	}

	list, err := memberlist.Create(conf)
	if err != nil {
		logger.Fatalf("[ERR] peer: cannot start memberlist: %v", err)
	}
	local := list.LocalNode()
	emit(map[string]interface{}{
		"event": "ready",
		"name":  local.Name,
		"addr":  local.Addr.String(),
		"port":  local.Port,
	})

	if *join != "" {
		n, err := list.Join(strings.Split(*join, ","))
		emit(map[string]interface{}{"event": "joined", "count": n, "error": fmt.Sprint(err)})
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	list.Shutdown()
}

// The structs below repeat memberlist's message shapes (field names, order
// and omitempty tags are the wire format) so -golden can encode samples with
// the same msgpack codec memberlist uses.

type gPing struct {
	SeqNo      uint32
	Node       string
	SourceAddr []byte `codec:",omitempty"`
	SourcePort uint16 `codec:",omitempty"`
	SourceNode string `codec:",omitempty"`
}

type gIndirectPing struct {
	SeqNo      uint32
	Target     []byte
	Port       uint16
	Node       string
	Nack       bool
	SourceAddr []byte `codec:",omitempty"`
	SourcePort uint16 `codec:",omitempty"`
	SourceNode string `codec:",omitempty"`
}

type gAck struct {
	SeqNo   uint32
	Payload []byte
}

type gNack struct{ SeqNo uint32 }

type gSuspect struct {
	Incarnation uint32
	Node        string
	From        string
}

type gAlive struct {
	Incarnation uint32
	Node        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Vsn         []uint8
}

type gDead struct {
	Incarnation uint32
	Node        string
	From        string
}

type gHeader struct {
	Nodes        int
	UserStateLen int
	Join         bool
}

type gNodeState struct {
	Name        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Incarnation uint32
	State       memberlist.NodeStateType
	Vsn         []uint8
}

type gCompress struct {
	Algo uint8
	Buf  []byte
}

func encodeMsg(kind byte, v interface{}) []byte {
	var buf bytes.Buffer
	buf.WriteByte(kind)
	handle := codec.MsgpackHandle{}
	if err := codec.NewEncoder(&buf, &handle).Encode(v); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func lzwBytes(data []byte) []byte {
	var buf bytes.Buffer
	w := lzw.NewWriter(&buf, lzw.LSB, 8)
	if _, err := w.Write(data); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func printGolden() {
	ip := []byte{10, 0, 0, 7}
	vsn := []uint8{1, 5, 2, 0, 0, 0}
	ping := encodeMsg(0, &gPing{SeqNo: 42, Node: "node-b"})
	long := bytes.Repeat([]byte("memberlist gossip "), 300)
	samples := map[string][]byte{
		"ping":           ping,
		"pingWithSource": encodeMsg(0, &gPing{SeqNo: 70000, Node: "node-b", SourceAddr: ip, SourcePort: 7946, SourceNode: "node-a"}),
		"indirectPing":   encodeMsg(1, &gIndirectPing{SeqNo: 9, Target: ip, Port: 7946, Node: "node-c", Nack: true}),
		"ack":            encodeMsg(2, &gAck{SeqNo: 42}),
		"ackWithPayload": encodeMsg(2, &gAck{SeqNo: 4294967295, Payload: []byte("pong")}),
		"nack":           encodeMsg(11, &gNack{SeqNo: 300}),
		"suspect":        encodeMsg(3, &gSuspect{Incarnation: 5, Node: "node-c", From: "node-a"}),
		"alive":          encodeMsg(4, &gAlive{Incarnation: 1, Node: "node-a", Addr: ip, Port: 7946, Meta: []byte("role=cache"), Vsn: vsn}),
		"aliveNoMeta":    encodeMsg(4, &gAlive{Incarnation: 2, Node: "node-a", Addr: ip, Port: 7946, Vsn: vsn}),
		"dead":           encodeMsg(5, &gDead{Incarnation: 3, Node: "node-c", From: "node-c"}),
		"pushPullHeader": encodeMsg(6, &gHeader{Nodes: 1, UserStateLen: 4, Join: true})[1:],
		"pushNodeState":  encodeMsg(6, &gNodeState{Name: "node-a", Addr: ip, Port: 7946, Meta: []byte("m"), Incarnation: 7, State: memberlist.StateSuspect, Vsn: vsn})[1:],
		"compressedPing": encodeMsg(9, &gCompress{Algo: 0, Buf: lzwBytes(ping)}),
		"lzwPlain":       long,
		"lzwCompressed":  lzwBytes(long),
		"lzwEmpty":       lzwBytes(nil),
		"lzwAbracadabra": lzwBytes([]byte("TOBEORNOTTOBEORTOBEORNOT#")),
	}
	// Enough varied input to fill the code table several times over, so
	// width growth and the table reset are both exercised.
	var varied []byte
	state := uint32(1)
	for i := 0; i < 40000; i++ {
		state = state*1103515245 + 12345
		varied = append(varied, "abcdefghij"[state>>16%10])
	}
	samples["lzwVariedPlain"] = varied
	samples["lzwVaried"] = lzwBytes(varied)

	out := make(map[string]string, len(samples))
	for name, b := range samples {
		out[name] = hex.EncodeToString(b)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
