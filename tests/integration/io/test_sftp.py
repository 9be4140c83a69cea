"""The SFTP seam against a real OpenSSH server on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.support.sshd import running_sshd
from upkeep.io.sftp import SftpCredentials, SftpLocation, SftpSession


def test_closing_a_session_whose_server_died_raises_nothing(tmp_path: Path) -> None:
    """A copy that failed because the destination went away must report that failure:
    the close on the way out (paramiko's EOFError on a dead channel) used to replace it."""
    remote = tmp_path / "offsite"
    remote.mkdir()
    with running_sshd(tmp_path / "sshd") as server:
        credentials = SftpCredentials(
            identity_file=str(server.identity_file),
            password=None,
            known_hosts=str(server.known_hosts),
        )
        session = SftpSession(SftpLocation.parse(server.url(remote)), credentials)
        session.open()
        assert session.sftp.listdir(str(remote)) == []
        # The moment a lost destination leaves behind: paramiko's packetizer has given up
        # on the connection, its transport has not yet noticed, so closing the SFTP channel
        # still tries to send (and met EOFError).
        client = session._client
        assert client is not None
        transport = client.get_transport()
        assert transport is not None
        transport.packetizer.close()
        session.close()  # must not raise
        session.close()  # and stays safe to call twice
