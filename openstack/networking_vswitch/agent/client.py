"""A small client of vswitchd's REST API (/v1) over its unix socket,
stdlib only."""
import http.client
import json
import socket


class APIError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        super().__init__('vswitchd API: HTTP %s: %s' % (status, body))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Client(object):
    """Calls raise OSError when vswitchd is down and APIError on an
    HTTP error status."""

    def __init__(self, api_socket, timeout=5.0, token=None):
        self.api_socket = api_socket
        self.timeout = timeout
        self.token = token

    def _call(self, method, path, body=None, ok=(200, 201, 204)):
        return self._request(method, path, body, ok=ok)[0]

    def _request(self, method, path, body=None, ok=(200, 201, 204),
                 headers=None):
        """(decoded body, ETag header) of one request."""
        conn = _UnixConnection(self.api_socket, self.timeout)
        try:
            headers = dict(headers or {}, Accept='application/json')
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers['Content-Type'] = 'application/json'
            if self.token:
                headers['Authorization'] = 'Bearer ' + self.token
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status not in ok:
            raise APIError(resp.status, raw.decode(errors='replace'))
        return (json.loads(raw) if raw else None), resp.getheader('ETag')

    def openapi(self):
        return self._call('GET', '/v1/openapi.json')

    def port_fields(self):
        """The fields PortConfig has in this vswitchd's API."""
        return self.schema_fields('PortConfig')

    def schema_fields(self, name):
        doc = self.openapi()
        schema = doc.get('components', {}).get('schemas', {}).get(name, {})
        return set(schema.get('properties', {}))

    def ports(self):
        return self._call('GET', '/v1/ports') or []

    def port(self, name):
        try:
            return self._call('GET', '/v1/ports/' + name)
        except APIError as e:
            if e.status == 404:
                return None
            raise

    def put_port(self, cfg):
        return self._call('PUT', '/v1/ports/' + cfg['name'], cfg)

    def delete_port(self, name):
        try:
            self._call('DELETE', '/v1/ports/' + name)
        except APIError as e:
            if e.status != 404:
                raise

    def bridges(self):
        return self._call('GET', '/v1/bridges') or []

    def ensure_bridge(self, name):
        try:
            self._call('POST', '/v1/bridges', {'name': name})
        except APIError as e:
            if e.status != 409:
                raise

    def config(self):
        return self._call('GET', '/v1/config')

    def config_revision(self):
        """The config's global revision (its ETag)."""
        return self._request('GET', '/v1/config')[1]

    def put_security_groups(self, groups, attempts=5):
        """Replace the security_groups section. PUT /v1/config replaces
        bridges, ports, groups, ACLs and routers with what the body has
        (only daemon sections left out keep their values), so this writes
        back the whole current config with the groups changed, under
        If-Match: a concurrent change (409) makes it read again."""
        for attempt in range(attempts):
            cfg, etag = self._request('GET', '/v1/config')
            cfg['security_groups'] = groups
            try:
                return self._request('PUT', '/v1/config', cfg,
                                     headers={'If-Match': etag})[0]
            except APIError as e:
                if e.status != 409 or attempt == attempts - 1:
                    raise
